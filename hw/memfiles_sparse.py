"""Block-sparse layers for hw/rtl/mvtu_sparse.v: decomposition of an integer weight
matrix, the schedule, and the ``$readmemh`` images (docs/hw_interfaces.md,
"Block-sparse matrix-vector unit").

numpy only, like hw/memfiles.py, so that the code generator, the golden model
(sim/golden_ext.py re-exports this) and the testbenches write identical files.

Weight kinds:
  ``sparse01``   W = m + q*B, B in {0,1}; a block is stored iff it holds a 1 of B.
  ``pm1_blocks`` W in {-1, 0, +1}, every PE x SIMD block either all-zero (not
                 stored) or all +-1 (stored, bit 1 = +1): grouped / block-diagonal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError

from .hwgraph import attr_str, get_attrs, initializer
from .memfiles import multithreshold_words, pack_fields, threshold_words, write_memh

SPARSE_KINDS = ("sparse01", "pm1_blocks")

WEIGHT_KINDS = ("sparse01", "pm1_blocks")
INPUT_KINDS = ("bipolar", "unipolar", "int")
MODE_OF_KIND = {"bipolar": 0, "unipolar": 1, "int": 2}


def sched_field_bits(sf: int) -> int:
    """Width of the sf field of a schedule entry (SFW in the RTL)."""
    return max(1, (sf - 1).bit_length())


def input_maxabs(input_kind: str, input_bits: int = 1, input_signed: bool = False) -> int:
    if input_kind in ("bipolar", "unipolar"):
        return 1
    return (1 << (input_bits - 1)) if input_signed else (1 << input_bits) - 1


def acc_bits_for_matrix(W: np.ndarray, input_kind: str, input_bits: int = 1,
                        input_signed: bool = False) -> int:
    """Smallest signed width holding [-R, R], R = max_o sum_i |W[o,i]| * maxabs(x)."""
    r = int(np.abs(np.asarray(W, dtype=np.int64)).sum(axis=1).max(initial=0))
    return max(2, (r * input_maxabs(input_kind, input_bits, input_signed)).bit_length() + 1)


@dataclass
class SparseLayer:
    """A matrix in mvtu_sparse form. ``bits`` (MH, MW) holds the stored weight bits
    (sparse01: B; pm1_blocks: 1 = +1 inside stored blocks, 0 elsewhere);
    ``blocks`` the stored (nf, sf) in schedule order; ``schedule`` the entries
    (empty, last, sf)."""
    weight_kind: str
    m: int
    q: int
    bits: np.ndarray
    pe: int
    simd: int
    blocks: list
    schedule: list

    @property
    def mh(self) -> int:
        return self.bits.shape[0]

    @property
    def mw(self) -> int:
        return self.bits.shape[1]

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    @property
    def nnz(self) -> int:
        return len(self.blocks)

    @property
    def steps(self) -> int:
        return len(self.schedule)

    def matrix(self) -> np.ndarray:
        """The integer matrix this layer computes with."""
        b = self.bits.astype(np.int64)
        if self.weight_kind == "sparse01":
            return self.m + self.q * b
        mask = np.zeros_like(b)
        for nf, sf in self.blocks:
            mask[nf * self.pe:(nf + 1) * self.pe, sf * self.simd:(sf + 1) * self.simd] = 1
        return mask * (2 * b - 1)

    # ------------------------------------------------------------- images
    def weight_words(self) -> list[int]:
        """Depth max(NNZ, 1), width PE*SIMD; word k = k-th stored block in schedule
        order, bit p*SIMD + j = bit of output nf*PE + p, input sf*SIMD + j."""
        words = []
        for nf, sf in self.blocks:
            blk = self.bits[nf * self.pe:(nf + 1) * self.pe, sf * self.simd:(sf + 1) * self.simd]
            words.append(pack_fields([int(v) for v in blk.reshape(-1)], 1))
        return words or [0]

    def schedule_words(self) -> list[int]:
        """Depth STEPS, width SFW + 2: bits [SFW-1:0] sf, bit SFW last step of the
        fold, bit SFW+1 empty step (fold without stored blocks)."""
        sfw = sched_field_bits(self.sf)
        return [sf | (last << sfw) | (empty << (sfw + 1)) for empty, last, sf in self.schedule]

    def row_constants(self, input_kind: str) -> np.ndarray | None:
        """Per-output constant C[o] of acc = Q_EFF*P + M*S + C: only sparse01 with
        bipolar inputs needs one, C[o] = -q * popcount(B[o])."""
        if self.weight_kind != "sparse01" or input_kind != "bipolar":
            return None
        return -self.q * self.bits.astype(np.int64).sum(axis=1)

    def write(self, directory: str | Path, input_kind: str, acc_bits: int,
              thresholds: np.ndarray | None = None, prefix: str = "") -> dict:
        """Write weights/schedule (+ row constants, thresholds) images; returns the
        RTL parameters (file names relative to *directory*)."""
        d = Path(directory)
        names = {k: f"{prefix}{k}.mem" for k in ("weights", "schedule", "rowconst", "thresholds")}
        write_memh(d / names["weights"], self.weight_words(), self.pe * self.simd)
        write_memh(d / names["schedule"], self.schedule_words(), sched_field_bits(self.sf) + 2)
        params = dict(MW=self.mw, MH=self.mh, PE=self.pe, SIMD=self.simd,
                      MODE=MODE_OF_KIND[input_kind], ACC_BITS=acc_bits,
                      WEIGHT_KIND=self.weight_kind,
                      WEIGHT_M=self.m if self.weight_kind == "sparse01" else 0,
                      WEIGHT_Q=self.q if self.weight_kind == "sparse01" else 1,
                      NNZ=self.nnz, STEPS=self.steps,
                      WEIGHT_FILE=names["weights"], SCHED_FILE=names["schedule"],
                      THRESH_FILE="", ROWC_FILE="")
        c = self.row_constants(input_kind)
        if c is not None:
            write_memh(d / names["rowconst"], row_const_words(c, self.pe, acc_bits), self.pe * acc_bits)
            params["ROWC_FILE"] = names["rowconst"]
        if thresholds is not None:
            T = np.asarray(thresholds, dtype=np.int64)
            if T.ndim == 1:
                words, width = threshold_words(T, self.pe, acc_bits), self.pe * acc_bits
            else:
                words = multithreshold_words(T, self.pe, acc_bits)
                width = self.pe * T.shape[1] * acc_bits
            write_memh(d / names["thresholds"], words, width)
            params["THRESH_FILE"] = names["thresholds"]
        return params

    def stats(self) -> dict:
        """Memory and cycle figures: stored vs dense weight bits, schedule steps and
        steady-state cycles per frame max(SF, STEPS) (dense mvtu: NF*SF)."""
        block_bits = self.pe * self.simd
        dense = self.nf * self.sf * block_bits
        stored = self.nnz * block_bits
        sfw = sched_field_bits(self.sf)
        return {
            "nonzero_blocks": self.nnz,
            "total_blocks": self.nf * self.sf,
            "empty_folds": sum(1 for e, _, _ in self.schedule if e),
            "stored_bits": stored,
            "dense_bits": dense,
            "bits_saved": dense - stored,
            "schedule_bits": self.steps * (sfw + 2),
            "steps": self.steps,
            "scheduled_cycles": self.steps,
            "cycles_per_frame": max(self.sf, self.steps),
            "dense_cycles_per_frame": self.nf * self.sf,
        }


def _infer_mq(W: np.ndarray, m: int | None) -> tuple[int, int]:
    vals = [int(v) for v in np.unique(W)]
    if m is None:
        # the most frequent value is the "0" state, so that B is as sparse as
        # possible (ties: the smaller value); q may then be negative
        m = max(vals, key=lambda v: (int((W == v).sum()), -v)) if vals else 0
    others = [v for v in vals if v != m]
    if len(others) > 1:
        raise ValueError(f"sparse01 needs W in {{m, m+q}} with m={m}, got values {vals}")
    return int(m), (others[0] - int(m)) if others else 1


def build_sparse_layer(W: np.ndarray, pe: int, simd: int, weight_kind: str = "sparse01",
                       m: int | None = None) -> SparseLayer:
    """Decompose integer matrix W (MH, MW) for mvtu_sparse with folding PE, SIMD.

    sparse01: W must take at most two values {m, m+q}; m defaults to the more
    frequent one (q may then be negative). pm1_blocks: every block is all-zero or
    all +-1."""
    W = np.asarray(W, dtype=np.int64)
    mh, mw = W.shape
    if mh % pe or mw % simd:
        raise ValueError(f"MH={mh}, MW={mw} not divisible by PE={pe}, SIMD={simd}")
    nf_, sf_ = mh // pe, mw // simd
    if weight_kind == "sparse01":
        m, q = _infer_mq(W, m)
        bits = ((W - m) // q).astype(np.int64) if q else np.zeros_like(W)
        if not np.array_equal(m + q * bits, W) or not np.isin(bits, (0, 1)).all():
            raise ValueError(f"W is not of the form {m} + {q}*B")
        stored = bits
    elif weight_kind == "pm1_blocks":
        if not np.isin(W, (-1, 0, 1)).all():
            raise ValueError("pm1_blocks weights must be in {-1, 0, +1}")
        m, q = 0, 1
        bits = (W > 0).astype(np.int64)
        stored = (W != 0).astype(np.int64)
    else:
        raise ValueError(f"unknown weight kind {weight_kind!r}; expected one of {WEIGHT_KINDS}")
    blocks, schedule = [], []
    for nf in range(nf_):
        nzs = []
        for sf in range(sf_):
            blk = stored[nf * pe:(nf + 1) * pe, sf * simd:(sf + 1) * simd]
            if blk.any():
                if weight_kind == "pm1_blocks" and not blk.all():
                    raise ValueError(f"pm1_blocks: block (nf={nf}, sf={sf}) mixes 0 and +-1 "
                                     f"weights; groups must align with PE={pe} x SIMD={simd}")
                nzs.append(sf)
        if not nzs:
            schedule.append((1, 1, 0))
        for k, sf in enumerate(nzs):
            blocks.append((nf, sf))
            schedule.append((0, int(k == len(nzs) - 1), sf))
    return SparseLayer(weight_kind, int(m), int(q), bits, pe, simd, blocks, schedule)


def row_const_words(C: np.ndarray, pe: int, acc_bits: int) -> list[int]:
    """Row-constant image: depth NF, width PE*ACC_BITS, field p = C[nf*PE + p]."""
    return threshold_words(C, pe, acc_bits)


def integer_matrix(kind: str, m: int, q: int, stored: np.ndarray) -> np.ndarray:
    """The integer matrix of a SparseMatMul / MVTUSparse from its initializer."""
    s = np.asarray(stored, dtype=np.int64)
    if kind == "sparse01":
        if not np.all((s == 0) | (s == 1)):
            raise BnnforgeError("sparse01 weights: the bit matrix B holds values other than 0/1")
        return m + q * s
    if kind == "pm1_blocks":
        if not np.all(np.isin(s, (-1, 0, 1))):
            raise BnnforgeError("pm1_blocks weights: values other than -1, 0, +1")
        return s
    raise BnnforgeError(f"unknown sparse weight kind {kind!r}; expected one of {', '.join(SPARSE_KINDS)}")


# ---------------------------------------------------------------------------
# the hardware graph's MVTUSparse nodes

def node_matrix(model: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    a = get_attrs(node)
    return integer_matrix(attr_str(a["weight_kind"]), int(a["m"]), int(a["q"]), initializer(model, node.input[1]))


def sparse_layer(model: onnx.ModelProto, node: onnx.NodeProto, pe: int | None = None, simd: int | None = None,
                 src: str | None = None):
    """SparseLayer of an MVTUSparse node at its (or the given) folding;
    a block mixing 0 and +-1 (pm1_blocks not aligned with PE x SIMD) is refused naming
    the node."""
    a = get_attrs(node)
    pe = a["PE"] if pe is None else pe
    simd = a["SIMD"] if simd is None else simd
    kind = attr_str(a["weight_kind"])
    w = node_matrix(model, node)
    try:
        return build_sparse_layer(w, pe, simd, kind, m=int(a["m"]) if kind == "sparse01" else None)
    except ValueError as e:
        where = f"{src}: " if src else ""
        raise BnnforgeError(f"{where}node {node.name!r}: {e}") from None
