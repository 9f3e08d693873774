"""mvtu_sparse against sim/golden_ext.py over many parameter sets.

Each parameter set is one Verilator build; the cocotb tests (random
gaps/backpressure scenarios chained without reset, and the cycles-per-frame
measurement) run back to back in one simulation. Expected outputs come from the
plain integer dot product sparse_dot(x, W) of the original matrix, so a bug in
the decomposition or the image writers shows up as well.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from bnnforge.hw.memfiles_sparse import MODE_OF_KIND
from bnnforge.sim.golden_ext import (acc_bits_for_matrix, build_sparse_layer, decode_inputs, multithreshold,
                            sparse_dot, sparse_images, sparse_outputs)
from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import rtl_sources, run_test

pytestmark = pytest.mark.rtl

SOURCES = rtl_sources("mvtu_sparse", "popcount", "popcount_compressor", "adder_tree", "sign_resize", "pipe_delay")
PIPE_LATENCY = 3  # issue of a fold's last step -> out_valid, hw/rtl/mvtu_sparse.v


def sparse_pipe_latency(simd: int, pipe_every: int, mode: int) -> int:
    """Edges from the issue of a fold's last step to out_valid (hw/rtl/mvtu_sparse.v)."""
    if pipe_every == 0:
        return PIPE_LATENCY
    if mode == 2:   # adder tree of the operands
        tree = max(0, (simd - 1).bit_length() - 1) // pipe_every
    else:           # popcount_compressor: registered 6:3 counters, tree of ceil(SIMD/6) counts
        tree = 1 + max(0, ((simd + 5) // 6 - 1).bit_length() - 1) // pipe_every
    return 7 + (mode == 2) + tree


# (MW, MH, PE, SIMD, input kind, INPUT_BITS, signed, weight kind, pattern, m, q, OUT_MODE, OUT_BITS)
CONFIGS = [
    (32, 16, 4, 8, "bipolar", 1, 0, "sparse01", "blocks", -1, 2, 0, 1),   # W in {-1,+1} via m=-1,q=2
    (32, 16, 4, 8, "bipolar", 1, 0, "sparse01", "elem", 0, 8, 1, 1),      # {0, 8}, raw
    (24, 12, 3, 4, "bipolar", 1, 0, "sparse01", "blocks", -1, 8, 1, 1),   # {-1, 7}, row constants + S
    (24, 12, 3, 4, "unipolar", 1, 0, "sparse01", "blocks", -1, 8, 0, 1),  # Si-BNN-like {0,1} inputs
    (20, 8, 2, 5, "unipolar", 1, 0, "sparse01", "dense", 2, -3, 1, 1),    # negative q, every block stored
    (16, 8, 2, 4, "int", 4, 0, "sparse01", "blocks", -1, 8, 1, 1),
    (12, 6, 3, 2, "int", 3, 1, "sparse01", "elem", 1, 4, 2, 2),          # signed int3, 2-bit outputs
    (16, 8, 4, 4, "bipolar", 1, 0, "sparse01", "zero", -1, 8, 1, 1),      # whole matrix = m: acc = -S
    (16, 8, 4, 4, "unipolar", 1, 0, "sparse01", "zero", 0, 1, 1, 1),      # zero matrix: NNZ = 0
    (32, 16, 4, 8, "bipolar", 1, 0, "pm1_blocks", "grouped4", 0, 1, 0, 1),  # 4 groups
    (24, 12, 2, 4, "unipolar", 1, 0, "pm1_blocks", "grouped3", 0, 1, 1, 1),
    (16, 8, 4, 2, "int", 4, 1, "pm1_blocks", "grouped2", 0, 1, 1, 1),
    (24, 8, 2, 4, "bipolar", 1, 0, "pm1_blocks", "blocks", 0, 1, 1, 1),    # random block mask
    (12, 6, 3, 3, "int", 3, 0, "pm1_blocks", "grouped2", 0, 1, 2, 3),     # k-bit in/out, grouped
    (8, 8, 2, 8, "unipolar", 1, 0, "sparse01", "elem", -1, 8, 0, 1),      # SF = 1
    (6, 4, 1, 1, "bipolar", 1, 0, "sparse01", "blocks", -2, 4, 1, 1),     # PE = SIMD = 1
    (64, 4, 4, 4, "bipolar", 1, 0, "sparse01", "elem", -1, 8, 1, 1),      # NF = 1: load-bound
    (16, 8, 2, 4, "int", 2, 0, "sparse01", "dense", 0, 1, 1, 1),         # dense {0,1} = mvtu-like
    (8, 4, 4, 8, "unipolar", 1, 0, "sparse01", "blocks", -1, 8, 1, 1),    # NF = SF = 1: a frame per cycle
    (8, 4, 4, 8, "bipolar", 1, 0, "sparse01", "zero", 3, 1, 1, 1),        # NF = SF = 1, only the empty step
    # SF = 1, pm1_blocks: a fold is stored whole or empty (2 block-diagonal groups cannot
    # be SF = 1: a SIMD = MW block always straddles both groups, which the builder refuses)
    (16, 4, 2, 16, "bipolar", 1, 0, "pm1_blocks", "blocks", 0, 1, 1, 1),
]


def _id(c):
    mw, mh, pe, simd, ik, ib, sg, wk, pat, m, q, om, k = c
    ins = ik if ik != "int" else f"int{ib}{'s' if sg else 'u'}"
    return f"MW{mw}_MH{mh}_PE{pe}_S{simd}_{ins}_{wk}_{pat}_m{m}_q{q}_om{om}" + (f"k{k}" if om == 2 else "")


def _bits(rng, mh, mw, pe, simd, pattern):
    """{0,1} matrix with the block structure the pattern asks for."""
    nf, sf = mh // pe, mw // simd
    if pattern == "zero":
        return np.zeros((mh, mw), dtype=np.int64)
    if pattern == "elem":
        return (rng.random((mh, mw)) < 0.04).astype(np.int64)
    if pattern == "dense":
        B = rng.integers(0, 2, (mh, mw))
        for n in range(nf):
            for s in range(sf):
                B[n * pe, s * simd] = 1        # every block stored
        return B
    assert pattern == "blocks"
    mask = rng.random((nf, sf)) < 0.4
    if nf > 1:
        mask[nf // 2, :] = False               # an all-zero fold
    mask[0, :] = True                          # a fully stored fold
    B = (rng.random((mh, mw)) < 0.4).astype(np.int64) * np.kron(mask, np.ones((pe, simd), dtype=np.int64))
    B[1 % mh, :] = 0                           # an all-zero row inside stored blocks
    return B


def _matrix(rng, cfg):
    mw, mh, pe, simd, _, _, _, wk, pat, m, q, _, _ = cfg
    nf, sf = mh // pe, mw // simd
    if wk == "sparse01":
        return m + q * _bits(rng, mh, mw, pe, simd, pat)
    if pat.startswith("grouped"):
        g = int(pat[len("grouped"):])
        mask = np.kron(np.eye(g, dtype=np.int64), np.ones((mh // g, mw // g), dtype=np.int64))
    else:
        bm = rng.random((nf, sf)) < 0.4
        bm[-1, :] = False                      # an empty fold
        bm[0, 0] = True
        mask = np.kron(bm, np.ones((pe, simd), dtype=np.int64))
    return mask * (2 * rng.integers(0, 2, (mh, mw)) - 1)


def _inputs(rng, frames, mw, kind, ib, signed):
    if kind != "int":
        x = rng.integers(0, 2, size=(frames, mw))
        x[0, :] = 1
        x[1, :] = 0
        return x
    lo, hi = (-(1 << (ib - 1)), (1 << (ib - 1)) - 1) if signed else (0, (1 << ib) - 1)
    x = rng.integers(lo, hi + 1, size=(frames, mw))
    x[0, :] = lo
    x[1, :] = hi
    return x


def _thresholds(rng, acc, acc_bits, nt):
    mh = acc.shape[1]
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    T = acc[rng.integers(0, acc.shape[0], size=(mh, nt)), np.arange(mh)[:, None]]
    T = T + rng.integers(-1, 2, size=(mh, nt))
    T[0, 0] = lo
    if mh > 1:
        T[-1, -1] = hi
    return np.sort(np.clip(T, lo, hi), axis=1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_mvtu_sparse(cfg, tmp_path):
    _run_sparse(cfg, 0, tmp_path)


# the deepened pipeline (PIPE_EVERY > 0): (index into CONFIGS, PIPE_EVERY). Every input and
# weight kind, row constants, the S queue (m != 0) at NF = 1 and at SF = 1 (a frame per
# cycle and load-bound), empty folds, multi-threshold outputs, OUT_FLIP-free raw sums
PIPED_CONFIGS = [(0, 1), (2, 2), (3, 1), (5, 1), (6, 1), (9, 2), (10, 1), (11, 1), (13, 1), (14, 1), (15, 1),
                 (16, 1), (18, 1), (19, 2), (20, 1)]
PIPED_SLOW = {(3, 1), (9, 2), (13, 1), (15, 1), (20, 1)}


@pytest.mark.parametrize("k,pipe", [pytest.param(k, p, marks=pytest.mark.slow) if (k, p) in PIPED_SLOW else (k, p)
                                    for k, p in PIPED_CONFIGS],
                         ids=[f"{_id(CONFIGS[k])}_pipe{p}" for k, p in PIPED_CONFIGS])
def test_mvtu_sparse_pipelined(k, pipe, tmp_path):
    _run_sparse(CONFIGS[k], pipe, tmp_path)


def _run_sparse(cfg, pipe, tmp_path):
    mw, mh, pe, simd, ik, ib, signed, wk, pat, m, q, out_mode, k = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    W = _matrix(rng, cfg)
    layer = build_sparse_layer(W, pe, simd, wk, m=m if wk == "sparse01" else None)
    assert np.array_equal(layer.matrix(), W)
    acc_bits = acc_bits_for_matrix(W, ik, ib, bool(signed))
    stats = layer.stats()
    nf, sf, steps = mh // pe, mw // simd, layer.steps

    n_frames = [max(4, 400 // steps), max(3, 100 // steps), max(3, 100 // steps), max(5, 200 // steps)]
    xs = [_inputs(rng, n, mw, ik, ib, bool(signed)) for n in n_frames]
    accs = [sparse_dot(decode_inputs(x, ik), W) for x in xs]
    assert max(np.abs(a).max() for a in accs) < (1 << (acc_bits - 1))
    nt = (1 << k) - 1 if out_mode == 2 else 1
    T = None
    if out_mode != 1:
        T = _thresholds(rng, np.concatenate(accs), acc_bits, nt)
        if out_mode == 0:
            T = T[:, 0]
    params = layer.write(tmp_path, ik, acc_bits, thresholds=T)
    params.update(INPUT_BITS=ib, INPUT_SIGNED=signed, OUT_MODE=out_mode, OUT_BITS=k, PIPE_EVERY=pipe)
    assert params["MODE"] == MODE_OF_KIND[ik]
    ob = {0: 1, 1: acc_bits, 2: k}[out_mode]

    def scenario(name, x, acc, p_gap, p_stall, seed):
        y = sparse_outputs(acc, out_mode, T)
        return {"name": name, "in_beats": frames_to_beats(x, simd, ib),
                "expected": frames_to_beats(y, pe, ob), "p_gap": p_gap, "p_stall": p_stall,
                "seed": seed, "max_cycles": 400 + 40 * len(x) * (max(sf, steps) + nf)}

    fold0_steps = next(i for i, (_, last, _) in enumerate(layer.schedule) if last) + 1
    case = {
        "PE": pe, "NF": nf, "SF": sf, "OB": ob, "steps": steps,
        "period": max(sf, steps), "latency": fold0_steps + sparse_pipe_latency(simd, pipe, params["MODE"]),
        "scenarios": [
            scenario("random", xs[0], accs[0], 0.3, 0.3, 1),
            scenario("heavy_backpressure", xs[1], accs[1], 0.0, 0.85, 2),
            scenario("sparse_input", xs[2], accs[2], 0.8, 0.1, 3),
        ],
        "throughput": scenario("throughput", xs[3], accs[3], 0.0, 0.0, 4),
    }
    (tmp_path / "case.json").write_text(json.dumps(case))
    res = run_test(SOURCES, "mvtu_sparse", "bnnforge.sim.tb.tb_mvtu_sparse", parameters=params,
                   workdir=tmp_path, extra_env={"TB_CASE": str(tmp_path / "case.json")})
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "throughput"}
    print(f"{_id(cfg)}: {stats}")


# ---------------------------------------------------------------- pure Python
def test_decomposition_and_stats():
    rng = np.random.default_rng(0)
    B = (rng.random((8, 16)) < 0.1).astype(np.int64)
    B[4:6, :] = 0                                  # fold 2 (PE=2) empty
    W = -1 + 8 * B
    r = sparse_images(W, 2, 4, "sparse01", "bipolar")
    lay = r["layer"]
    assert (lay.m, lay.q) == (-1, 8)               # majority value is the 0 state
    assert np.array_equal(lay.matrix(), W)
    st = r["stats"]
    nz = sum(B[n * 2:(n + 1) * 2, s * 4:(s + 1) * 4].any() for n in range(4) for s in range(4))
    assert st["nonzero_blocks"] == nz and st["stored_bits"] == nz * 8
    assert st["dense_bits"] == 128 and st["bits_saved"] == 128 - nz * 8
    assert st["steps"] == nz + st["empty_folds"] and st["empty_folds"] >= 1
    assert st["cycles_per_frame"] == max(4, st["steps"])
    # row constants: acc = 2q*P - q*popcount(B[o]) + m*S
    x = rng.integers(0, 2, (5, 16))
    xv = decode_inputs(x, "bipolar")
    P = x @ B.T
    S = xv.sum(axis=1, keepdims=True)
    C = lay.row_constants("bipolar")
    assert np.array_equal(2 * 8 * P + C[None, :] + (-1) * S, sparse_dot(xv, W))
    # the q < 0 choice when the larger value is the common one (beta = 0 form)
    lay2 = build_sparse_layer(np.where(B == 1, -3, 0), 2, 4)
    assert (lay2.m, lay2.q) == (0, -3)
    with pytest.raises(ValueError):
        build_sparse_layer(np.array([[0, 1, 2, 0]]), 1, 2)
    # grouped layers must align with the folding
    G = np.kron(np.eye(2, dtype=np.int64), np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="align"):
        build_sparse_layer(G, 2, 2, "pm1_blocks")
    assert build_sparse_layer(G, 2, 3, "pm1_blocks").nnz == 2
    # multithreshold counts met thresholds
    assert multithreshold(np.array([[-5, 0, 3, 9]]), np.array([[-1, 2, 3]] * 4)).tolist() == [[0, 1, 3, 3]]
