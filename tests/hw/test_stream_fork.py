"""stream_fork: each output receives every input beat once, in order, while
the outputs stall independently (one output stalled most of the time, the
other always ready, and the reverse) and the input has random gaps; with all
outputs ready a beat passes every cycle. Lint-clean for several parameter sets."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.runner import LintError, lint, rtl_sources
from bnnforge.sim.tb.cases import run_case

pytestmark = pytest.mark.rtl

# (WIDTH, N)
CONFIGS = [(8, 2), (1, 2), (37, 3), (64, 1)]
SLOW_CONFIGS = [(130, 2), (3, 5)]


def fork_case(width: int, n: int) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"fork{width}_{n}".encode()))

    def beats(count):
        # random in all WIDTH bits, 31 bits at a time
        out = [0] * count
        for lo in range(0, width, 31):
            chunk = rng.integers(0, 1 << min(31, width - lo), size=count)
            out = [v | (int(c) << lo) for v, c in zip(out, chunk)]
        return out

    def sc(name, count, p_gap, p_stall, seed):
        b = beats(count)
        # a fork's reference: every output equals the input
        return {"name": name, "in_beats": [b], "expected": [b] * n, "p_gap": [p_gap],
                "p_stall": list(p_stall), "seed": seed}

    lopsided = [0.9 if o % 2 == 0 else 0.0 for o in range(n)]
    return {
        "inputs": [{"prefix": "in", "width": width}],
        "outputs": [{"prefix": "out", "width": width, "index": o} for o in range(n)],
        "scenarios": [
            sc("random", 300, 0.3, [0.3] * n, 1),
            sc("one_output_stalled", 150, 0.0, lopsided, 2),
            sc("other_output_stalled", 150, 0.0, [0.9 - p for p in lopsided], 3),
            sc("sparse_input", 150, 0.8, [0.1] * n, 4),
            sc("all_stalled", 100, 0.0, [0.7] * n, 5),
        ],
        "full_rate": sc("full_rate", 200, 0.0, [0.0] * n, 6),
        "rate_checks": ["in_every_cycle", "out_every_cycle"],
    }


def _run(width, n, tmp_path):
    run_case(rtl_sources("stream_fork"), "stream_fork", "bnnforge.sim.tb.tb_ports",
             {"WIDTH": width, "N": n}, tmp_path, fork_case(width, n))


@pytest.mark.parametrize("width,n", CONFIGS, ids=[f"W{w}_N{n}" for w, n in CONFIGS])
def test_stream_fork(width, n, tmp_path):
    _run(width, n, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("width,n", SLOW_CONFIGS, ids=[f"W{w}_N{n}" for w, n in SLOW_CONFIGS])
def test_stream_fork_slow(width, n, tmp_path):
    _run(width, n, tmp_path)


@pytest.mark.parametrize("params", [{}, {"WIDTH": 1, "N": 1}, {"WIDTH": 200, "N": 7}])
def test_stream_fork_lint_clean(params):
    assert lint(rtl_sources("stream_fork"), "stream_fork", params) == []


def test_stream_fork_illegal_parameters_fail_elaboration():
    with pytest.raises(LintError) as ei:
        lint(rtl_sources("stream_fork"), "stream_fork", {"N": 0})
    assert "stream_fork_error_N_and_WIDTH_must_be_positive" in str(ei.value)
