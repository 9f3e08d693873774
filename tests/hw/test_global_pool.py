"""global_pool: per-frame channel sums against numpy (signed and unsigned
inputs, {0,1} activations, one pixel, channel folds that are not powers of
two, an accumulator that wraps), several frames back to back under random
gaps and backpressure, and one input beat per cycle with a ready output.
Lint-clean for several parameter sets."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import LintError, lint, rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl

# (PIXELS, C, PE, IN_BITS, SIGNED, ACC_BITS or None for the default)
CONFIGS = [
    (16, 4, 2, 1, 0, None),    # {0,1} activations: popcount per channel, default 1 + 4 bits
    (9, 6, 3, 4, 1, 8),        # 3x3 map, signed 4-bit
    (1, 2, 2, 3, 1, 3),        # one pixel: the input itself
    (7, 5, 1, 8, 0, 11),       # CF = 5, unsigned bytes
    (16, 8, 8, 2, 1, 4),       # too narrow: sums modulo 2^4
]
SLOW_CONFIGS = [
    (49, 64, 16, 1, 0, None),  # 7x7 head of a residual net
    (64, 10, 5, 4, 0, 10),
    (4, 3, 3, 16, 1, 18),
]


def pool_reference(x: np.ndarray, acc_bits: int) -> np.ndarray:
    """x (frames, PIXELS, C) -> channel sums (frames, C), modulo 2^acc_bits."""
    return np.asarray(x, np.int64).sum(axis=1) % (1 << acc_bits)


def _acc_bits(cfg):
    pixels, _, _, in_bits, _, acc = cfg
    return acc if acc is not None else in_bits + (pixels - 1).bit_length()


def _params(cfg):
    pixels, c, pe, in_bits, signed, acc = cfg
    p = {"PIXELS": pixels, "C": c, "PE": pe, "IN_BITS": in_bits, "SIGNED": signed}
    if acc is not None:
        p["ACC_BITS"] = acc
    return p


def _id(cfg):
    pixels, c, pe, in_bits, signed, acc = cfg
    return f"N{pixels}_C{c}_PE{pe}_B{in_bits}{'s' if signed else 'u'}_A{acc or 'dflt'}"


def test_pool_reference():
    x = np.array([[[1, -2], [3, -4]]])
    assert pool_reference(x, 8).tolist() == [[4, 250]]
    assert pool_reference(x, 2).tolist() == [[0, 2]]


def _run(cfg, tmp_path):
    pixels, c, pe, in_bits, signed, _ = cfg
    acc = _acc_bits(cfg)
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    lo, hi = (-(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1) if signed else (0, (1 << in_bits) - 1)
    per_frame = pixels * c // pe

    def sc(name, budget, p_gap, p_stall, seed):
        n = int(max(3, min(12, budget // per_frame)))
        x = rng.integers(lo, hi + 1, size=(n, pixels, c))
        x[0], x[1] = lo, hi          # the extreme sums
        y = pool_reference(x, acc)
        return scenario(name, frames_to_beats(x.reshape(n, -1), pe, in_bits),
                        frames_to_beats(y, pe, acc), p_gap, p_stall, seed)

    case = {
        "scenarios": [
            sc("random", 600, 0.3, 0.3, 1),
            sc("backpressure", 300, 0.0, 0.9, 2),
            sc("sparse_input", 300, 0.7, 0.0, 3),
        ],
        "full_rate": sc("full_rate", 600, 0.0, 0.0, 4),
        "rate_checks": ["in_every_cycle", "in_never_stalled"],
    }
    run_case(rtl_sources("global_pool"), "global_pool", "bnnforge.sim.tb.tb_streams",
             _params(cfg), tmp_path, case)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_global_pool(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW_CONFIGS, ids=[_id(c) for c in SLOW_CONFIGS])
def test_global_pool_slow(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.parametrize("cfg", CONFIGS[:4] + [(1, 1, 1, 1, 0, None), (49, 512, 32, 1, 0, None)], ids=_id)
def test_global_pool_lint_clean(cfg):
    assert lint(rtl_sources("global_pool"), "global_pool", _params(cfg)) == []


@pytest.mark.parametrize("params,needle", [
    ({"C": 5, "PE": 2}, "global_pool_error_C_not_a_positive_multiple_of_PE"),
    ({"IN_BITS": 4, "ACC_BITS": 3}, "global_pool_error_PIXELS_IN_BITS_positive_ACC_BITS_ge_IN_BITS_SIGNED_0_or_1"),
    ({"SIGNED": 3}, "global_pool_error_PIXELS_IN_BITS_positive_ACC_BITS_ge_IN_BITS_SIGNED_0_or_1"),
])
def test_global_pool_illegal_parameters_fail_elaboration(params, needle):
    with pytest.raises(LintError) as ei:
        lint(rtl_sources("global_pool"), "global_pool", params)
    assert needle in str(ei.value)
