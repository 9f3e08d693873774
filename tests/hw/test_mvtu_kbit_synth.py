"""Yosys reads mvtu_kbit as Verilator simulates it (no implicitly declared or undriven
signals that would let synthesis fold a datapath away), every PE's lanes survive, and
no lane becomes a DSP48 even where the product is 9 bits wide (4-bit weights x 4-bit
inputs; tests/hw/test_synth_rtl_library.py does the same for mvtu and mvtu_sparse)."""
import numpy as np
import pytest

from bnnforge.hw.memfiles import multithreshold_words, write_memh
from bnnforge.hw.memfiles_kbit import kbit_weight_words
from bnnforge.hw.synth import synthesize
from bnnforge.sim.verilator_env import rtl_sources

SUSPECT = ("implicitly declared", "out of bounds", "Setting all", "is used but has no driver")


@pytest.mark.parametrize("arch", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_mvtu_kbit_synthesizes_to_luts(tmp_path, arch):
    mw, mh, pe, simd, wb, ib, acc, k = 16, 8, 4, 8, 4, 4, 12, 2
    rng = np.random.default_rng(arch)
    W = rng.integers(-8, 8, (mh, mw))
    write_memh(tmp_path / "w.mem", kbit_weight_words(W, pe, simd, wb), pe * simd * wb)
    T = np.sort(rng.integers(-100, 100, (mh, 2 ** k - 1)), axis=1)
    write_memh(tmp_path / "t.mem", multithreshold_words(T, pe, acc), pe * (2 ** k - 1) * acc)
    (tmp_path / "wrap.v").write_text(f"""
module wrap (input clk, input rst_n, input [{simd * ib - 1}:0] in_data, input in_valid, output in_ready,
             output [{pe * k - 1}:0] out_data, output out_valid, input out_ready);
  mvtu_kbit #(.MW({mw}), .MH({mh}), .PE({pe}), .SIMD({simd}), .MODE(2), .WEIGHT_BITS({wb}), .ARCH({arch}),
              .INPUT_BITS({ib}), .INPUT_SIGNED(1), .ACC_BITS({acc}), .OUT_MODE(2), .OUT_BITS({k}),
              .WEIGHT_FILE("w.mem"), .THRESH_FILE("t.mem")) u (
    .clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid), .in_ready(in_ready),
    .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    res = synthesize(rtl_sources("popcount", "adder_tree", "pipe_delay", "mvtu_kbit") + [tmp_path / "wrap.v"], "wrap",
                     workdir=tmp_path)
    log = res.log_path.read_text()
    bad = [ln for ln in log.splitlines() if "Warning" in ln and any(s in ln for s in SUSPECT)]
    assert bad == [], bad[:3]
    trees = sum(m.count for m in res.modules.values() if m.base == "adder_tree")
    assert trees >= pe * (1 if arch == 0 else wb)
    assert res.total.dsp == 0, res.total
    assert res.total.lut_total >= pe * simd * wb, res.total
