"""mvtu against the numpy reference, over many parameter sets.

Each parameter set is one Verilator build; its cocotb tests (random
gaps/backpressure scenarios chained without reset, and the cycles-per-frame
measurement) run back to back in one simulation.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from bnnforge.hw.memfiles import fold_words
from bnnforge.sim.memfiles import threshold_words, weight_words, write_memh
from bnnforge.sim.reference import acc_bits_for, frames_to_beats, mvtu_acc, mvtu_outputs
from bnnforge.sim.runner import rtl_sources, run_test

pytestmark = pytest.mark.rtl

SOURCES = rtl_sources("mvtu", "popcount", "popcount_compressor", "adder_tree", "pipe_delay", "stream_fifo", "credit_queue")
MVTU_LATENCY = 3  # documented in hw/rtl/mvtu.v


def mvtu_latency(simd: int, pipe_every: int, mode: int, weight_ram: int = 0) -> int:
    """Edges from the last input beat of a fold to out_valid (hw/rtl/mvtu.v)."""
    if pipe_every == 0:
        return MVTU_LATENCY
    if mode == 2:  # adder tree of the +-x operands
        levels = max(0, (simd - 1).bit_length())
        tree = max(0, levels - 1) // pipe_every
    else:  # popcount_compressor: registered 6:3 counters, tree of ceil(SIMD/6) counts
        levels = max(0, ((simd + 5) // 6 - 1).bit_length())
        tree = 1 + max(0, levels - 1) // pipe_every
    return MVTU_LATENCY + 2 + (weight_ram == 1) + (mode == 2) + tree

# (MW, MH, PE, SIMD, MODE, INPUT_BITS, INPUT_SIGNED, OUT_MODE, acc slack bits)
CONFIGS = [
    (16, 8, 2, 4, 0, 1, 0, 0, 0),     # XNOR threshold, both folds > 1
    (12, 6, 3, 4, 0, 1, 0, 1, 2),     # XNOR raw accumulator, non-power-of-2 PE
    (8, 4, 1, 1, 0, 1, 0, 0, 0),      # PE=1, SIMD=1 corner
    (32, 4, 4, 32, 0, 1, 0, 0, 0),    # PE=MH and SIMD=MW: one step per frame
    (20, 6, 2, 5, 1, 1, 0, 0, 0),     # AND threshold, odd SIMD
    (16, 10, 10, 2, 1, 1, 0, 1, 0),   # AND raw, PE=MH
    (6, 4, 2, 3, 2, 4, 1, 1, 0),      # ADDSUB signed int4, raw
    (12, 8, 4, 4, 2, 8, 0, 0, 0),     # ADDSUB unsigned int8 threshold
    (9, 3, 1, 9, 2, 3, 1, 0, 1),      # ADDSUB signed int3, SIMD=MW, PE=1
    (4, 2, 1, 4, 0, 1, 0, 1, 0),      # ACC_BITS exactly the range, SF=1
    (64, 16, 4, 16, 0, 1, 0, 0, 0),   # larger layer
    (10, 3, 3, 1, 2, 2, 0, 1, 0),     # ADDSUB unsigned 2-bit, SIMD=1, PE=MH
    (150, 6, 2, 1, 0, 1, 0, 1, 0),    # 450-word weight ROM: two 256-word banks when pipelined
]


def _id(c):
    mw, mh, pe, simd, mode, ib, sg, om, _ = c
    return f"MW{mw}_MH{mh}_PE{pe}_S{simd}_m{mode}_ib{ib}{'s' if sg else 'u'}_om{om}"


def _inputs(rng, frames, mw, mode, ib, signed):
    if mode in (0, 1):
        return rng.integers(0, 2, size=(frames, mw))
    if signed:
        lo, hi = -(1 << (ib - 1)), (1 << (ib - 1)) - 1
    else:
        lo, hi = 0, (1 << ib) - 1
    x = rng.integers(lo, hi + 1, size=(frames, mw))
    # make sure the extreme codes (e.g. -2^(IB-1), whose negation needs a bit more) occur
    x[0, :] = lo
    x[1, :] = hi
    return x


def _thresholds(rng, acc, acc_bits):
    """Mostly thresholds drawn from real accumulator values (exercises equality),
    plus the range ends that the compiler uses for always-on/always-off."""
    mh = acc.shape[1]
    T = acc[rng.integers(0, acc.shape[0], size=mh), np.arange(mh)] + rng.integers(-1, 2, size=mh)
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    T[0] = lo
    if mh > 1:
        T[-1] = hi
    if mh > 2:
        T[1] = acc[:, 1].max()  # exactly the max: on only for the maximal frames
    return np.clip(T, lo, hi)


# the deepened pipeline (PIPE_EVERY > 0): (index into CONFIGS, PIPE_EVERY)
PIPED_CONFIGS = [(0, 1), (1, 2), (2, 1), (3, 1), (4, 1), (5, 2), (6, 1), (8, 2), (9, 1), (10, 2), (11, 3), (12, 1)]
# ... with the weights in block RAM (one more register after the RAM read), WEIGHT_FOLD words
# side by side in a memory row: (index, PIPE_EVERY, WEIGHT_FOLD)
PIPED_BRAM_CONFIGS = [(0, 1, 1), (3, 2, 1), (6, 1, 1), (9, 1, 1), (12, 2, 1), (12, 1, 7), (0, 2, 3), (10, 1, 16),
                      (2, 1, 32)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_mvtu(cfg, tmp_path):
    _run_mvtu(cfg, 0, tmp_path)


@pytest.mark.parametrize("k,pipe", PIPED_CONFIGS, ids=[f"{_id(CONFIGS[k])}_pipe{p}" for k, p in PIPED_CONFIGS])
def test_mvtu_pipelined(k, pipe, tmp_path):
    _run_mvtu(CONFIGS[k], pipe, tmp_path)


@pytest.mark.parametrize("k,pipe,fold", PIPED_BRAM_CONFIGS,
                         ids=[f"{_id(CONFIGS[k])}_pipe{p}_bram_fold{f}" for k, p, f in PIPED_BRAM_CONFIGS])
def test_mvtu_pipelined_weights_in_block_ram(k, pipe, fold, tmp_path):
    _run_mvtu(CONFIGS[k], pipe, tmp_path, weight_ram=1, fold=fold)


def _run_mvtu(cfg, pipe, tmp_path, weight_ram=0, fold=1):
    mw, mh, pe, simd, mode, ib, signed, out_mode, slack = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    acc_bits = acc_bits_for(mw, mode, ib, bool(signed)) + slack
    nf, sf = mh // pe, mw // simd
    W = rng.integers(0, 2, size=(mh, mw))
    ob = acc_bits if out_mode else 1

    # the thresholds are fixed per simulation (read at time 0), so draw them
    # from a pool of all the frames used below
    steps = nf * sf
    n_frames = [max(4, 600 // steps), max(3, 120 // steps), max(3, 150 // steps), max(4, 200 // steps)]
    xs = [_inputs(rng, n, mw, mode, ib, bool(signed)) for n in n_frames]
    accs = [mvtu_acc(W, x, mode) for x in xs]
    assert max(np.abs(a).max() for a in accs) < (1 << (acc_bits - 1))
    T = _thresholds(rng, np.concatenate(accs), acc_bits)

    write_memh(tmp_path / "weights.mem", fold_words(weight_words(W, pe, simd), fold, pe * simd), fold * pe * simd)
    write_memh(tmp_path / "thresholds.mem", threshold_words(T, pe, acc_bits), pe * acc_bits)

    def scenario(name, x, acc, p_gap, p_stall, seed):
        y = mvtu_outputs(acc, out_mode, T)
        return {
            "name": name,
            "in_beats": frames_to_beats(x, simd, ib),
            "expected": frames_to_beats(y, pe, ob),
            "p_gap": p_gap,
            "p_stall": p_stall,
            "seed": seed,
        }

    case = {
        "PE": pe, "NF": nf, "SF": sf, "OB": ob, "latency": mvtu_latency(simd, pipe, mode, weight_ram),
        "scenarios": [
            scenario("random", xs[0], accs[0], 0.3, 0.3, 1),
            scenario("heavy_backpressure", xs[1], accs[1], 0.0, 0.85, 2),
            scenario("sparse_input", xs[2], accs[2], 0.8, 0.1, 3),
        ],
        "throughput": scenario("throughput", xs[3], accs[3], 0.0, 0.0, 4),
    }
    (tmp_path / "case.json").write_text(json.dumps(case))

    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=mode, INPUT_BITS=ib,
                  INPUT_SIGNED=signed, ACC_BITS=acc_bits, OUT_MODE=out_mode, PIPE_EVERY=pipe,
                  WEIGHT_RAM=weight_ram, WEIGHT_FOLD=fold, WEIGHT_FILE="weights.mem", THRESH_FILE="thresholds.mem")
    res = run_test(SOURCES, "mvtu", "bnnforge.sim.tb.tb_mvtu", parameters=params, workdir=tmp_path,
                   extra_env={"TB_CASE": str(tmp_path / "case.json")})
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "throughput"}


# ---------------------------------------------------------------- OUT_MODE 2
# (MW, MH, PE, SIMD, MODE, INPUT_BITS, INPUT_SIGNED, OUT_BITS)
MT_CONFIGS = [
    (16, 8, 2, 4, 0, 1, 0, 2),     # XNOR in, 2-bit out
    (20, 6, 3, 5, 1, 1, 0, 3),     # AND in, 3-bit out, odd SIMD, non-pow2 PE
    (12, 8, 4, 4, 2, 2, 0, 2),     # 2-bit in / 2-bit out (weight-only binarization)
    (12, 6, 2, 3, 2, 3, 0, 3),     # 3-bit in / 3-bit out
    (8, 3, 1, 8, 2, 3, 0, 3),      # SIMD=MW, PE=1
    (6, 4, 4, 1, 2, 4, 1, 2),      # signed int4 in, SIMD=1, PE=MH
    (8, 4, 2, 2, 0, 1, 0, 1),      # k=1: one threshold, same as OUT_MODE 0
]


def _mt_id(c):
    mw, mh, pe, simd, mode, ib, sg, k = c
    return f"MW{mw}_MH{mh}_PE{pe}_S{simd}_m{mode}_ib{ib}{'s' if sg else 'u'}_k{k}"


def _multithresholds(rng, acc, acc_bits, nt):
    """Per channel: NT sorted thresholds drawn from real accumulator values
    (equality), with duplicates and the range ends mixed in."""
    mh = acc.shape[1]
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    T = acc[rng.integers(0, acc.shape[0], size=(mh, nt)), np.arange(mh)[:, None]]
    T = T + rng.integers(-1, 2, size=(mh, nt))
    if nt > 1:
        T[0, 0] = lo                  # lowest level always reached
        T[-1, -1] = hi                # top level (nearly) never
        T[mh // 2, 1:] = T[mh // 2, 0]  # all equal: the count jumps 0 -> NT
    if mh > 2:
        T[1, :] = acc[:, 1].max()     # on only for the maximal frames
    return np.sort(np.clip(T, lo, hi), axis=1)


@pytest.mark.parametrize("cfg", MT_CONFIGS, ids=[_mt_id(c) for c in MT_CONFIGS])
def test_mvtu_multithreshold(cfg, tmp_path):
    _run_mvtu_multithreshold(cfg, 0, tmp_path)


@pytest.mark.parametrize("k,pipe", [(1, 1), (4, 2)], ids=[f"{_mt_id(MT_CONFIGS[k])}_pipe{p}" for k, p in
                                                          [(1, 1), (4, 2)]])
def test_mvtu_multithreshold_pipelined(k, pipe, tmp_path):
    _run_mvtu_multithreshold(MT_CONFIGS[k], pipe, tmp_path)


def _run_mvtu_multithreshold(cfg, pipe, tmp_path):
    from bnnforge.hw.memfiles import multithreshold_words
    from bnnforge.sim.golden_ext import multithreshold

    mw, mh, pe, simd, mode, ib, signed, k = cfg
    nt = (1 << k) - 1
    rng = np.random.default_rng(zlib.crc32(_mt_id(cfg).encode()))
    acc_bits = acc_bits_for(mw, mode, ib, bool(signed))
    nf, sf = mh // pe, mw // simd
    W = rng.integers(0, 2, size=(mh, mw))
    steps = nf * sf
    n_frames = [max(4, 600 // steps), max(3, 120 // steps), max(3, 150 // steps), max(4, 200 // steps)]
    xs = [_inputs(rng, n, mw, mode, ib, bool(signed)) for n in n_frames]
    accs = [mvtu_acc(W, x, mode) for x in xs]
    T = _multithresholds(rng, np.concatenate(accs), acc_bits, nt)
    ys = [multithreshold(a, T) for a in accs]
    # every output level occurs somewhere (the thresholds come from the data)
    assert np.concatenate(ys).max() >= min(nt, 2)

    write_memh(tmp_path / "weights.mem", weight_words(W, pe, simd), pe * simd)
    write_memh(tmp_path / "thresholds.mem", multithreshold_words(T, pe, acc_bits), pe * nt * acc_bits)

    def scenario(name, x, y, p_gap, p_stall, seed):
        return {"name": name, "in_beats": frames_to_beats(x, simd, ib),
                "expected": frames_to_beats(y, pe, k),
                "p_gap": p_gap, "p_stall": p_stall, "seed": seed}

    case = {
        "PE": pe, "NF": nf, "SF": sf, "OB": k, "latency": mvtu_latency(simd, pipe, mode),
        "scenarios": [
            scenario("random", xs[0], ys[0], 0.3, 0.3, 1),
            scenario("heavy_backpressure", xs[1], ys[1], 0.0, 0.85, 2),
            scenario("sparse_input", xs[2], ys[2], 0.8, 0.1, 3),
        ],
        "throughput": scenario("throughput", xs[3], ys[3], 0.0, 0.0, 4),
    }
    (tmp_path / "case.json").write_text(json.dumps(case))
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=mode, INPUT_BITS=ib,
                  INPUT_SIGNED=signed, ACC_BITS=acc_bits, OUT_MODE=2, OUT_BITS=k, PIPE_EVERY=pipe,
                  WEIGHT_FILE="weights.mem", THRESH_FILE="thresholds.mem")
    res = run_test(SOURCES, "mvtu", "bnnforge.sim.tb.tb_mvtu", parameters=params, workdir=tmp_path,
                   extra_env={"TB_CASE": str(tmp_path / "case.json")})
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "throughput"}
