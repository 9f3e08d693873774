"""Sparse weight layers in the flow: the {alpha, beta} binary domain (sparse BNN) and
grouped / block-diagonal binary layers, compiled into `mvtu_sparse`
(docs/hw_interfaces.md, "Block-sparse matrix-vector unit"). Reading a sparse node back
(its integer matrix, its blocks at a folding) is hw/memfiles_sparse.py's: code generation
needs it too, and hw/ does not import the compiler.

Weight kinds of a fully-connected layer, decided from its exact integer matrix `W`
(after tidy-up: the MatMul's constant holds `W`, the float scale is a Mul behind it):
  "binary"      every |W| = 1: the dense `mvtu` (BinaryMatMul).
  "sparse01"    at most two values: `W = m + q*B`, B in {0,1}, m the more frequent value
                (ties: the smaller), so B marks the rarer value. Streamlined into
                SparseMatMul(weight_kind="sparse01", m, q) with B as the initializer.
  "pm1_blocks"  three values {-1, 0, +1}: grouped / block-diagonal binary layers;
                SparseMatMul(weight_kind="pm1_blocks") with W itself as the initializer.
Everything else is refused with the node's name.

Negative scales: the dense and the pm1_blocks forms flip the weight row (d -> -d), as
streamlining always did. A flipped row of `m + q*B` is `-m - q*B`, which is not of the
layer's form (one m, one q per layer) unless the domain is symmetric, so a sparse01
layer keeps its rows and inverts the channel's output instead (`OUT_FLIP` of
`mvtu_sparse`): "on iff d <= T'" is "not (d >= T' + 1)". With thresholds T found for
-d (the flipped form), the inverted form uses 1 - T (k-bit outputs: the level becomes
NT - level, thresholds 1 - T reversed).
"""
from __future__ import annotations

import numpy as np

from bnnforge.errors import BnnforgeError



def classify_weights(w_int: np.ndarray, name: str, op: str = "MatMul",
                     sparse: bool = False) -> tuple[str, int, int]:
    """(kind, m, q) of an integer weight matrix; see the module docstring. `sparse`:
    the layer came from a multi-bit (binary-domain) quantizer, so even {-1,+1} weights
    take the sparse01 form (W = -1 + 2B, or +1 - 2B), where its sparse B pays off."""
    w = np.asarray(w_int)
    if not np.array_equal(w, np.round(w)):
        raise BnnforgeError(f"node {name!r} ({op}): weights are not integers after tidy-up")
    w = w.astype(np.int64)
    vals, counts = np.unique(w, return_counts=True)
    if vals.size and np.all(np.abs(vals) == 1) and not sparse:
        return "binary", -1, 2
    if len(vals) <= 2:
        if not len(vals):
            return "sparse01", 0, 1
        order = sorted(zip(vals.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))
        m = int(order[0][0])
        q = int(order[1][0]) - m if len(order) > 1 else 1
        return "sparse01", m, q
    if set(vals.tolist()) <= {-1, 0, 1}:
        return "pm1_blocks", 0, 1
    raise BnnforgeError(
        f"node {name!r} ({op}): weights take {len(vals)} integer values; the flow takes {{-1,+1}}, "
        "two-level {m, m+q} (binary domain) or ternary {-1,0,+1} with zero blocks (grouped)")


def acc_range(w_int: np.ndarray, maxabs_x: int) -> int:
    """R = max_o sum_i |W[o,i]| * max|x|: every accumulator value lies in [-R, R]."""
    w = np.abs(np.asarray(w_int, dtype=np.int64))
    return int(w.sum(axis=1).max(initial=0)) * int(maxabs_x)


def _signed_width(lo: int, hi: int) -> int:
    """Smallest signed width (>= 2) holding every integer in [lo, hi]."""
    k = 2
    while -(1 << (k - 1)) > lo or (1 << (k - 1)) - 1 < hi:
        k += 1
    return k


def split_weights(w: np.ndarray, quant_scale, name: str, channel_axis: int, bits: int = 2,
                  signed: bool = True, narrow: bool = False):
    """Tidy-up of a non-binary quantized MatMul weight: w = ints * scale[channel].

    `w` is the quantizer's output, `quant_scale`, `bits`, `signed`, `narrow` its
    parameters (the integer grid). The quantizer must be one of the two exported forms,
    not a general k-bit quantizer whose values happen to fall on few levels:
      two levels {a, b}: a signed quantizer of exactly the width that holds a, b and 0
                         (models/methods/binary_domain.py exports it so);
      {-1, 0, +1}:       the signed narrow 2-bit (ternary) grid (grouped layers).
    Returns (ints as float, per-output-channel scale) with the ints divided by their
    greatest common divisor (a smaller accumulator), or None when `w` is not such a
    grid (the caller then reports it)."""
    w = np.asarray(w, dtype=np.float64)
    s = np.broadcast_to(np.asarray(quant_scale, dtype=np.float64), w.shape)
    moved = np.moveaxis(s, channel_axis, 0).reshape(w.shape[channel_axis], -1)
    if np.any(moved <= 0) or not np.all(moved == moved[:, :1]):
        return None  # a scale that varies along the input axis, or not positive
    ints = np.round(w / s)
    if not np.array_equal((ints * s).astype(np.float32), w.astype(np.float32)):
        return None
    vals = [int(v) for v in np.unique(ints)]
    ternary = signed and narrow and bits == 2 and set(vals) <= {-1, 0, 1}
    two_level = (signed and not narrow and len(vals) == 2
                 and bits == _signed_width(min(vals[0], 0), max(vals[1], 0)))
    if not (ternary or two_level):
        return None
    g = int(np.gcd.reduce(np.abs(ints).astype(np.int64).ravel())) if ints.size else 1
    g = max(g, 1)
    return ints / g, moved[:, 0] * g


def invert_thresholds(t: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Thresholds of the flipped (-d) form -> thresholds on d whose output is inverted.

    1-bit: on iff -d >= T, i.e. not (d >= 1 - T). k-bit: level(-d) = #{t : -d >= T_t},
    NT - level = #{t : d >= 1 - T_t}, sorted ascending (the reversed row)."""
    t = np.array(t, dtype=np.int64, copy=True)
    flip = np.asarray(flip, dtype=bool)
    if t.ndim == 1:
        t[flip] = 1 - t[flip]
    else:
        t[flip] = (1 - t[flip])[:, ::-1]
    return t


def apply_output_flip(y: np.ndarray, flip: np.ndarray | None, nt: int = 1) -> np.ndarray:
    """Golden form of OUT_FLIP: the outputs of flipped channels become NT - y (1-bit: not y)."""
    if flip is None:
        return y
    f = np.asarray(flip, dtype=np.int64).reshape(-1)
    return np.where(f.astype(bool), nt - y, y)
