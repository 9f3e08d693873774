"""sliding_window against the numpy im2col (sim/reference_conv.py), over many
parameter sets: every output beat of several back-to-back frames under random
input gaps and output backpressure, and the cycles per frame with neither.

Each parameter set is one Verilator build; its cocotb tests run in one
simulation. The BNN-PYNQ CNV layer shapes are under the ``slow`` marker.
"""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.reference_conv import im2col_channels_last, ofm_dim
from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl

SOURCES = rtl_sources("sliding_window")

# (IFM_DIM, C, SIMD, K, S, PAD, EB)
CONFIGS = [
    (6, 4, 2, 3, 1, 0, 1),      # basic 3x3, SF=2
    (7, 2, 2, 3, 2, 1, 1),      # stride 2, padding, SIMD=C
    (5, 3, 1, 2, 1, 0, 8),      # K=2, SIMD=1, int8, odd C
    (8, 4, 4, 2, 2, 0, 1),      # K=S=2: input and output rates equal
    (6, 4, 2, 1, 1, 0, 1),      # K=1: input-bound pass-through
    (9, 2, 1, 1, 2, 0, 8),      # K=1 S=2: rows and columns skipped, floor 9 -> 5
    (7, 4, 4, 5, 1, 1, 1),      # K=5 with padding
    (12, 6, 3, 5, 2, 0, 1),     # K=5 S=2, floor: last row/column unused
    (4, 8, 8, 3, 1, 1, 8),      # int8, pad, whole pixel per beat
    (3, 2, 1, 3, 1, 1, 1),      # IFM=K, "same" padding
    (2, 1, 1, 2, 1, 0, 1),      # K=IFM: one window per frame, C=1
    (4, 2, 2, 1, 1, 1, 1),      # K=1 with padding: a border of zeros
    (10, 3, 3, 3, 1, 0, 8),     # first CNV layer in miniature (C=3, int8)
    (5, 128, 32, 3, 1, 0, 1),   # CNV conv5: 5x5x128 -> 3x3
]

SLOW_CONFIGS = [
    (32, 3, 3, 3, 1, 0, 8),     # CNV conv1
    (30, 64, 32, 3, 1, 0, 1),   # CNV conv2
    (14, 64, 32, 3, 1, 0, 1),   # CNV conv3
    (12, 128, 32, 3, 1, 0, 1),  # CNV conv4
    (3, 256, 32, 3, 1, 0, 1),   # CNV conv6: 3x3 -> 1x1
    (11, 8, 2, 5, 2, 2, 8),     # K=5 S=2 PAD=2
    (13, 6, 1, 3, 2, 1, 1),     # SIMD=1, stride 2, padding
    (7, 4, 2, 2, 2, 1, 1),      # K=S=2 with padding
    (8, 2, 2, 3, 3, 0, 1),      # S=K=3: non-overlapping windows
    (10, 2, 1, 2, 3, 0, 8),     # S=3 > K=2: rows skipped
    (1, 1, 1, 1, 1, 0, 1),      # one-word rows and frames: every beat starts a row and a frame
    (1, 2, 1, 1, 1, 1, 1),      # a one-pixel map padded to 3x3
    (5, 2, 2, 3, 1, 2, 1),      # PAD=2 > K-1: output rows wholly in the padding
    (4, 1, 1, 2, 4, 1, 1),      # S=4 > K=2 with padding, one word per pixel
]


def _id(c):
    ifm, ch, simd, k, s, pad, eb = c
    return f"I{ifm}_C{ch}_S{simd}_K{k}_st{s}_p{pad}_eb{eb}"


def _bounds(ifm, ch, simd, k, s, pad):
    sf = ch // simd
    od = ofm_dim(ifm, k, s, pad)
    out_pf = od * od * k * k * sf
    in_pf = ifm * ifm * sf
    need0 = max(1, min(k - pad, ifm))   # rows in before the first output beat
    per_frame = math.ceil(1.05 * max(out_pf, in_pf)) + 2
    first = need0 * ifm * sf + per_frame + 4
    return out_pf, in_pf, per_frame, first


def _run(cfg, tmp_path, record_property=None):
    ifm, ch, simd, k, s, pad, eb = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    out_pf, in_pf, bound_pf, bound_first = _bounds(ifm, ch, simd, k, s, pad)
    hi = (1 << eb) - 1

    def frames(n):
        x = rng.integers(0, hi + 1, size=(n, ifm, ifm, ch))
        x[0] = hi          # all-ones frame: padding zeros stand out
        if n > 2:
            x[2] = 0
        return x

    def nframes(budget, lo):
        return int(max(lo, min(8, budget // max(out_pf, in_pf))))

    def sc(name, n, p_gap, p_stall, seed):
        x = frames(n)
        cols = im2col_channels_last(x, k, s, pad)
        return scenario(name, frames_to_beats(x.reshape(n, -1), simd, eb),
                        frames_to_beats(cols.reshape(n, -1), simd, eb), p_gap, p_stall, seed)

    case = {
        "scenarios": [
            sc("random", nframes(1500, 3), 0.3, 0.3, 1),
            sc("heavy_backpressure", nframes(400, 2), 0.0, 0.75, 2),
            sc("sparse_input", nframes(500, 2), 0.8, 0.1, 3),
        ],
        "throughput": sc("throughput", nframes(2000, 3), 0.0, 0.0, 4),
        "out_per_frame": out_pf,
        "in_per_frame": in_pf,
        "beats_per_window": k * k * ch // simd,
        "bound_per_frame": bound_pf,
        "bound_first": bound_first,
    }
    params = {"IFM_DIM": ifm, "C": ch, "K": k, "S": s, "PAD": pad, "EB": eb, "SIMD": simd}
    run_case(SOURCES, "sliding_window", "bnnforge.sim.tb.tb_sliding_window", params, tmp_path, case)
    info = json.loads((tmp_path / "throughput.json").read_text())
    print(f"sliding_window {_id(cfg)}: {info['steady_cycles_per_frame']} cycles/frame steady "
          f"(out {out_pf}, in {in_pf} beats/frame), first frame {info['first_frame_cycles']}")
    if record_property is not None:
        record_property("cycles_per_frame", info["steady_cycles_per_frame"])
    # the header's guarantee: back to back, not a cycle more than the busier side needs
    assert info["steady_cycles_per_frame"] == max(out_pf, in_pf), info
    return info


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_sliding_window(cfg, tmp_path, record_property):
    _run(cfg, tmp_path, record_property)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW_CONFIGS, ids=[_id(c) for c in SLOW_CONFIGS])
def test_sliding_window_slow(cfg, tmp_path, record_property):
    _run(cfg, tmp_path, record_property)
