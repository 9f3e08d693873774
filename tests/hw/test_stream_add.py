"""stream_add: lane-wise sums of two integer streams (signed and unsigned,
output wider, equal or narrower than the exact sum) against Python integer
arithmetic, under independent random gaps on each input and random output
backpressure; with both inputs always valid and the output always ready a pair
is added every cycle. Lint-clean for several parameter sets."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import LintError, lint, rtl_sources
from bnnforge.sim.tb.cases import run_case

pytestmark = pytest.mark.rtl

# (LANES, IN_BITS, SIGNED, OUT_BITS)
CONFIGS = [
    (2, 4, 1, 5),      # default: exact signed sum
    (1, 1, 0, 2),      # {0,1} + {0,1}
    (4, 8, 0, 9),      # unsigned bytes
    (3, 5, 1, 8),      # sign extension
    (2, 6, 1, 4),      # narrower: modulo 2^4
]
SLOW_CONFIGS = [(16, 8, 1, 9), (5, 3, 0, 6), (1, 16, 1, 17)]


def add_reference(a: np.ndarray, b: np.ndarray, out_bits: int) -> np.ndarray:
    """Exact integer sum, reduced modulo 2^out_bits: what extending (sign or
    zero) or truncating the exact sum to out_bits gives."""
    return (a.astype(np.int64) + b.astype(np.int64)) % (1 << out_bits)


def add_case(lanes, in_bits, signed, out_bits) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"add{lanes}_{in_bits}_{signed}_{out_bits}".encode()))
    lo, hi = (-(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1) if signed else (0, (1 << in_bits) - 1)

    def sc(name, n, p_gap, p_stall, seed):
        a = rng.integers(lo, hi + 1, size=(n, lanes))
        b = rng.integers(lo, hi + 1, size=(n, lanes))
        # the extremes: both minimum, both maximum, opposite ends
        a[:4], b[:4] = [[lo], [hi], [lo], [hi]], [[lo], [hi], [hi], [lo]]
        return {"name": name,
                "in_beats": [frames_to_beats(a, lanes, in_bits), frames_to_beats(b, lanes, in_bits)],
                "expected": [frames_to_beats(add_reference(a, b, out_bits), lanes, out_bits)],
                "p_gap": list(p_gap), "p_stall": [p_stall], "seed": seed}

    return {
        "inputs": [{"prefix": "in0", "width": lanes * in_bits},
                   {"prefix": "in1", "width": lanes * in_bits}],
        "outputs": [{"prefix": "out", "width": lanes * out_bits}],
        "scenarios": [
            sc("random", 300, (0.3, 0.3), 0.3, 1),
            sc("in0_sparse", 150, (0.8, 0.0), 0.1, 2),
            sc("in1_sparse", 150, (0.0, 0.8), 0.1, 3),
            sc("backpressure", 150, (0.1, 0.1), 0.85, 4),
        ],
        "full_rate": sc("full_rate", 200, (0.0, 0.0), 0.0, 5),
        "rate_checks": ["in_every_cycle", "out_every_cycle"],
    }


def _params(cfg):
    lanes, in_bits, signed, out_bits = cfg
    return {"LANES": lanes, "IN_BITS": in_bits, "SIGNED": signed, "OUT_BITS": out_bits}


def _id(cfg):
    return "L{}_B{}_{}_O{}".format(cfg[0], cfg[1], "s" if cfg[2] else "u", cfg[3])


def _run(cfg, tmp_path):
    run_case(rtl_sources("stream_add"), "stream_add", "bnnforge.sim.tb.tb_ports",
             _params(cfg), tmp_path, add_case(*cfg))


def test_add_reference_wraps_like_twos_complement():
    a, b = np.array([[-8, 7, 7]]), np.array([[-8, 7, -1]])
    assert add_reference(a, b, 5).tolist() == [[16, 14, 6]]      # -16, 14, 6 in 5 bits
    assert add_reference(a, b, 3).tolist() == [[0, 6, 6]]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_stream_add(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW_CONFIGS, ids=[_id(c) for c in SLOW_CONFIGS])
def test_stream_add_slow(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.parametrize("cfg", [(2, 4, 1, 5), (1, 1, 0, 1), (8, 8, 1, 12), (3, 6, 0, 3)],
                         ids=_id)
def test_stream_add_lint_clean(cfg):
    assert lint(rtl_sources("stream_add"), "stream_add", _params(cfg)) == []


@pytest.mark.parametrize("params,needle", [
    ({"OUT_BITS": 0}, "stream_add_error_LANES_IN_BITS_OUT_BITS_must_be_positive"),
    ({"LANES": 0}, "stream_add_error_LANES_IN_BITS_OUT_BITS_must_be_positive"),
    ({"SIGNED": 2}, "stream_add_error_SIGNED_must_be_0_or_1"),
])
def test_stream_add_illegal_parameters_fail_elaboration(params, needle):
    with pytest.raises(LintError) as ei:
        lint(rtl_sources("stream_add"), "stream_add", params)
    assert needle in str(ei.value)
