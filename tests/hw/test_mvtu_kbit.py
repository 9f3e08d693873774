"""mvtu_kbit (k-bit weights) against a numpy reference, over many parameter sets:
weight bits 2..4, both chunk architectures (lane products, bit planes), bipolar /
unipolar / signed and unsigned integer inputs (with the input offset of a signed
k-bit activation), and the three output modes.

The unit keeps mvtu's ports and schedule (its latency is mvtu's with PIPE_EVERY = 0 and
its own, kbit_latency below, when the pipeline is deepened), so the cocotb module is mvtu's
(bnnforge.sim.tb.tb_mvtu: chained scenarios with random gaps and backpressure, and the
cycles-per-frame measurement); the expected streams come from the plain integer
product below, not from the compiler's code.
"""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from bnnforge.hw.memfiles_kbit import kbit_weight_words
from bnnforge.sim.memfiles import write_memh
from bnnforge.hw.memfiles import multithreshold_words, threshold_words
from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import lint, rtl_sources, run_test

pytestmark = pytest.mark.rtl

SOURCES = rtl_sources("mvtu_kbit", "popcount", "adder_tree", "pipe_delay")
LATENCY = 3  # mvtu's, documented in hw/rtl/mvtu_kbit.v


def kbit_latency(simd: int, pipe_every: int, mode: int, arch: int) -> int:
    """Edges from the last input beat of a fold to out_valid (hw/rtl/mvtu_kbit.v)."""
    if pipe_every == 0:
        return LATENCY
    levels = max(0, (simd - 1).bit_length())
    return 5 + (mode == 2) + 1 + max(0, levels - 1) // pipe_every

# (MW, MH, PE, SIMD, MODE, INPUT_BITS, INPUT_SIGNED, INPUT_OFFSET, WEIGHT_BITS, ARCH, OUT_MODE, OUT_BITS)
CONFIGS = [
    (16, 8, 2, 4, 0, 1, 0, 0, 2, 0, 0, 1),    # bipolar in, ternary-range weights, threshold
    (16, 8, 2, 4, 0, 1, 0, 0, 2, 1, 0, 1),    # the same, bit planes
    (20, 6, 3, 5, 1, 1, 0, 0, 3, 0, 1, 1),    # unipolar in, 3-bit weights, raw, odd SIMD
    (12, 6, 2, 3, 2, 2, 0, 2, 2, 0, 2, 2),    # W2A2: levels - 2 in, 2-bit out (FINN's 2W2A)
    (12, 6, 2, 3, 2, 2, 0, 2, 2, 1, 2, 2),    # the same, bit planes
    (9, 3, 1, 9, 2, 3, 1, 0, 4, 1, 1, 1),     # signed int3 in, 4-bit weights, SIMD=MW, raw
    (8, 4, 4, 1, 2, 4, 0, 0, 4, 0, 0, 1),     # unsigned int4 in, SIMD=1, PE=MH
    (6, 4, 1, 2, 2, 4, 1, 0, 3, 1, 2, 3),     # signed int4 in, 3-bit weights, 3-bit out, PE=1
    (4, 2, 1, 4, 0, 1, 0, 0, 3, 0, 1, 1),     # SF=1, NF=2, raw
    (32, 8, 8, 32, 2, 2, 0, 1, 2, 0, 0, 1),   # one step per frame, offset 1 (narrow signed)
    (24, 12, 4, 6, 1, 1, 0, 0, 2, 1, 2, 2),   # unipolar, bit planes, 2-bit out
    (12, 4, 2, 3, 2, 8, 0, 0, 2, 0, 2, 2),    # 8-bit pixels x ternary (a CNV first layer): shift-add lanes
]


def _id(c):
    mw, mh, pe, simd, mode, ib, sg, off, wb, arch, om, ob = c
    return (f"MW{mw}_MH{mh}_PE{pe}_S{simd}_m{mode}_ib{ib}{'s' if sg else 'u'}o{off}_w{wb}_"
            f"{'planes' if arch else 'mul'}_om{om}" + (f"k{ob}" if om == 2 else ""))


def _inputs(rng, frames, mw, mode, ib, signed):
    if mode in (0, 1):
        return rng.integers(0, 2, size=(frames, mw))
    lo, hi = (-(1 << (ib - 1)), (1 << (ib - 1)) - 1) if signed else (0, (1 << ib) - 1)
    x = rng.integers(lo, hi + 1, size=(frames, mw))
    x[0, :], x[1, :] = lo, hi   # the extreme codes occur
    return x


def reference_acc(W, x, mode, offset):
    """acc[f, o] = sum_i W[o, i] * value(x[f, i])."""
    x = np.asarray(x, dtype=np.int64)
    v = 2 * x - 1 if mode == 0 else x - offset
    return v @ np.asarray(W, dtype=np.int64).T


def _weights(rng, mh, mw, wb):
    lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    W = rng.integers(lo, hi + 1, size=(mh, mw))
    W[0, :] = lo    # the most negative weight (its plane is the subtracted one)
    W[-1, :] = hi
    return W


def _acc_bits(W, mode, ib, signed, offset):
    if mode in (0, 1):
        maxabs = 1
    elif signed:
        maxabs = 1 << (ib - 1)
    else:
        maxabs = max(offset, (1 << ib) - 1 - offset)
    r = int(np.abs(W).sum(axis=1).max()) * maxabs
    return (r + 1).bit_length() + 1


def _thresholds(rng, acc, acc_bits, nt):
    mh = acc.shape[1]
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    T = acc[rng.integers(0, acc.shape[0], size=(mh, nt)), np.arange(mh)[:, None]] + rng.integers(-1, 2, (mh, nt))
    T[0, 0] = lo
    T[-1, -1] = hi
    return np.sort(np.clip(T, lo, hi), axis=1)


def _outputs(acc, out_mode, T):
    if out_mode == 0:
        return (acc >= T[:, 0][None, :]).astype(np.int64)
    if out_mode == 2:
        return (acc[:, :, None] >= T[None, :, :]).sum(axis=2)
    return acc


# CI runs every input kind, both architectures, the W2A2 case and the 8-bit pixels; the
# remaining shapes are in the slow set
SLOW = {1, 4, 6, 7, 9, 10}


@pytest.mark.parametrize("cfg", [pytest.param(c, marks=pytest.mark.slow) if i in SLOW else c
                                 for i, c in enumerate(CONFIGS)], ids=[_id(c) for c in CONFIGS])
def test_mvtu_kbit(cfg, tmp_path):
    _run_kbit(cfg, 0, tmp_path)


# the deepened pipeline (PIPE_EVERY > 0): (index into CONFIGS, PIPE_EVERY); both architectures,
# every input kind, SIMD from 1 to 32 (tree latencies 0 to 4), the three output modes
PIPED_CONFIGS = [(0, 1), (1, 1), (3, 1), (4, 2), (5, 1), (6, 1), (9, 1), (9, 3), (10, 1), (11, 2)]
PIPED_SLOW = {(1, 1), (4, 2), (9, 3)}


@pytest.mark.parametrize("k,pipe", [pytest.param(k, p, marks=pytest.mark.slow) if (k, p) in PIPED_SLOW else (k, p)
                                    for k, p in PIPED_CONFIGS],
                         ids=[f"{_id(CONFIGS[k])}_pipe{p}" for k, p in PIPED_CONFIGS])
def test_mvtu_kbit_pipelined(k, pipe, tmp_path):
    _run_kbit(CONFIGS[k], pipe, tmp_path)


def _run_kbit(cfg, pipe, tmp_path):
    mw, mh, pe, simd, mode, ib, signed, offset, wb, arch, out_mode, out_bits = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    W = _weights(rng, mh, mw, wb)
    acc_bits = _acc_bits(W, mode, ib, bool(signed), offset)
    nf, sf = mh // pe, mw // simd
    steps = nf * sf
    n_frames = [max(4, 600 // steps), max(3, 120 // steps), max(3, 150 // steps), max(4, 200 // steps)]
    xs = [_inputs(rng, n, mw, mode, ib, bool(signed)) for n in n_frames]
    accs = [reference_acc(W, x, mode, offset) for x in xs]
    assert max(np.abs(a).max() for a in accs) < (1 << (acc_bits - 1))
    nt = (1 << out_bits) - 1 if out_mode == 2 else 1
    T = _thresholds(rng, np.concatenate(accs), acc_bits, nt)
    ob = {0: 1, 1: acc_bits, 2: out_bits}[out_mode]

    write_memh(tmp_path / "weights.mem", kbit_weight_words(W, pe, simd, wb), pe * simd * wb)
    if out_mode == 2:
        write_memh(tmp_path / "thresholds.mem", multithreshold_words(T, pe, acc_bits), pe * nt * acc_bits)
    else:
        write_memh(tmp_path / "thresholds.mem", threshold_words(T[:, 0], pe, acc_bits), pe * acc_bits)

    def scenario(name, x, acc, p_gap, p_stall, seed):
        return {"name": name, "in_beats": frames_to_beats(x, simd, ib),
                "expected": frames_to_beats(_outputs(acc, out_mode, T), pe, ob),
                "p_gap": p_gap, "p_stall": p_stall, "seed": seed}

    case = {
        "PE": pe, "NF": nf, "SF": sf, "OB": ob, "latency": kbit_latency(simd, pipe, mode, arch),
        "scenarios": [
            scenario("random", xs[0], accs[0], 0.3, 0.3, 1),
            scenario("heavy_backpressure", xs[1], accs[1], 0.0, 0.85, 2),
            scenario("sparse_input", xs[2], accs[2], 0.8, 0.1, 3),
        ],
        "throughput": scenario("throughput", xs[3], accs[3], 0.0, 0.0, 4),
    }
    (tmp_path / "case.json").write_text(json.dumps(case))
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=mode, WEIGHT_BITS=wb, ARCH=arch, INPUT_BITS=ib,
                  INPUT_SIGNED=signed, INPUT_OFFSET=offset, ACC_BITS=acc_bits, OUT_MODE=out_mode,
                  OUT_BITS=out_bits, PIPE_EVERY=pipe, WEIGHT_FILE="weights.mem", THRESH_FILE="thresholds.mem")
    res = run_test(SOURCES, "mvtu_kbit", "bnnforge.sim.tb.tb_mvtu", parameters=params, workdir=tmp_path,
                   extra_env={"TB_CASE": str(tmp_path / "case.json")})
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "throughput"}


def test_reference_is_not_the_binary_product():
    """The reference the RTL is held to: a ternary weight 0 contributes nothing and a
    weight -2 twice the negated input (what a {-1,+1} product could not give)."""
    W = np.array([[0, -2, 1]])
    assert reference_acc(W, np.array([[1, 1, 0]]), 0, 0).tolist() == [[-3]]     # 0*1 - 2*1 + 1*(-1)
    assert reference_acc(W, np.array([[3, 3, 0]]), 2, 2).tolist() == [[-4]]     # levels - 2: 1, 1, -2


@pytest.mark.parametrize("arch", [0, 1])
@pytest.mark.parametrize("mode, ib, offset, wb", [(0, 1, 0, 3), (2, 2, 2, 3), (2, 4, 0, 4), (2, 8, 0, 2)])
@pytest.mark.parametrize("out_mode", [0, 1, 2])
@pytest.mark.parametrize("pipe", [0, 1, 2])
def test_mvtu_kbit_lint_clean(arch, mode, ib, offset, wb, out_mode, pipe):
    lint(SOURCES, "mvtu_kbit", parameters=dict(MW=24, MH=4, PE=2, SIMD=6, MODE=mode, WEIGHT_BITS=wb, ARCH=arch,
                                                INPUT_BITS=ib, INPUT_OFFSET=offset, ACC_BITS=16,
                                                OUT_MODE=out_mode, OUT_BITS=2, PIPE_EVERY=pipe))


@pytest.mark.parametrize("params", [dict(MW=1, MH=1, PE=1, SIMD=1, ACC_BITS=4), dict(WEIGHT_RAM=1),
                                    dict(MW=784, MH=64, PE=16, SIMD=49, MODE=2, INPUT_BITS=2, INPUT_OFFSET=1,
                                         ACC_BITS=12, OUT_MODE=2, OUT_BITS=2),
                                    dict(MW=1, MH=1, PE=1, SIMD=1, ACC_BITS=4, PIPE_EVERY=1),
                                    dict(MW=784, MH=64, PE=16, SIMD=49, MODE=2, INPUT_BITS=2, INPUT_OFFSET=1,
                                         ACC_BITS=12, OUT_MODE=2, OUT_BITS=2, PIPE_EVERY=2, ARCH=1)])
def test_mvtu_kbit_lint_corners(params):
    lint(SOURCES, "mvtu_kbit", parameters=params)
