"""The target clock sets each MVTU's tree pipelining (hw/stages/mvtu.py mvtu_pipe_every)."""
from __future__ import annotations

import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.hw.stages.mvtu import (LOGIC_SHARE, STA_ONE_LEVEL_NS, STA_PER_LEVEL_NS, mvtu_pipe_every)


@pytest.mark.parametrize("simd", [2, 8, 32, 49, 64, 1024])
def test_longer_clock_never_registers_more_often(simd):
    periods = [4.2, 4.5, 5.0, 6.0, 7.5, 10.0, 20.0]
    ks = [mvtu_pipe_every(simd, p) for p in periods]
    assert ks == sorted(ks) and all(k >= 1 for k in ks)
    # never more levels per clock than the model lets fit the logic share of the period
    for p, k in zip(periods, ks):
        assert k == 1 or STA_ONE_LEVEL_NS + (k - 1) * STA_PER_LEVEL_NS <= p * LOGIC_SHARE


def test_200_mhz_class_is_two_levels_and_the_default():
    assert mvtu_pipe_every(64, 5.0) == 2 == mvtu_pipe_every(64)
    assert mvtu_pipe_every(8, 10.0) == 3     # the tree of 8 has 3 levels: capped there
    assert mvtu_pipe_every(1024, 10.0) == 8


def test_a_clock_below_one_level_is_refused_naming_the_node():
    with pytest.raises(BnnforgeError, match=r"node 'MVTU_3': synth_clk_period_ns = 4 .* at least 4.11 ns"):
        mvtu_pipe_every(64, 4.0, "MVTU_3")
