"""Yosys must read the RTL library exactly as Verilator simulates it.

Regression: mvtu.v once read its thresholds through a hierarchical name into a
generate block declared further down. Verilator resolved it; Yosys made it an
implicitly declared undef wire, so synthesis constant-folded every threshold
layer away while simulation stayed bit-exact.
"""
import numpy as np
import pytest

from bnnforge.hw.memfiles import multithreshold_words, threshold_words, weight_words, write_memh
from bnnforge.hw.synth import synthesize
from bnnforge.sim.verilator_env import rtl_sources

SUSPECT = ("implicitly declared", "out of bounds", "Setting all", "is used but has no driver")


@pytest.mark.parametrize("mode,out_mode,pipe,wram", [(0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0), (1, 1, 0, 0),
                                                    (2, 2, 0, 0), (0, 0, 1, 0), (1, 0, 2, 1), (2, 2, 1, 1)])
def test_mvtu_synthesizes_without_undeclared_signals(tmp_path, mode, out_mode, pipe, wram):
    mw, mh, pe, simd, ib, acc = 16, 8, 4, 8, (4 if mode == 2 else 1), 10
    rng = np.random.default_rng(mode * 2 + out_mode)
    write_memh(tmp_path / "w.mem", weight_words(rng.integers(0, 2, (mh, mw)), pe, simd), pe * simd)
    k = 2  # OUT_BITS in OUT_MODE 2: 3 thresholds per output
    if out_mode == 2:
        T = np.sort(rng.integers(-8, 8, (mh, 2 ** k - 1)), axis=1)
        write_memh(tmp_path / "t.mem", multithreshold_words(T, pe, acc), pe * (2 ** k - 1) * acc)
    else:
        write_memh(tmp_path / "t.mem", threshold_words(rng.integers(-8, 8, mh), pe, acc), pe * acc)
    wrapper = tmp_path / "wrap.v"
    ow = pe * {0: 1, 1: acc, 2: k}[out_mode]
    wrapper.write_text(f"""
module wrap (input clk, input rst_n, input [{simd * ib - 1}:0] in_data, input in_valid, output in_ready,
             output [{ow - 1}:0] out_data, output out_valid, input out_ready);
  mvtu #(.MW({mw}), .MH({mh}), .PE({pe}), .SIMD({simd}), .MODE({mode}), .INPUT_BITS({ib}),
         .INPUT_SIGNED(1), .ACC_BITS({acc}), .OUT_MODE({out_mode}), .OUT_BITS({k}),
         .PIPE_EVERY({pipe}), .WEIGHT_RAM({wram}), .WEIGHT_FILE("w.mem"), .THRESH_FILE("{'' if out_mode == 1 else 't.mem'}")) u (
    .clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid), .in_ready(in_ready),
    .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    res = synthesize(rtl_sources("popcount", "popcount_compressor", "adder_tree", "pipe_delay", "stream_fifo", "credit_queue", "mvtu")
                     + [wrapper], "wrap", workdir=tmp_path)
    log = res.log_path.read_text()
    bad = [ln for ln in log.splitlines() if "Warning" in ln and any(s in ln for s in SUSPECT)]
    assert bad == [], bad[:3]
    # every PE's datapath survives: one tree per PE (+ the shared popcount(a) in AND mode)
    trees = sum(m.count for m in res.modules.values() if m.base in ("popcount", "adder_tree"))
    assert trees >= pe
    assert res.total.lut_total >= pe * simd, res.total


@pytest.mark.parametrize("weight_kind,input_kind,out_mode", [
    ("sparse01", "bipolar", 0), ("sparse01", "unipolar", 1), ("pm1_blocks", "int", 2)])
def test_mvtu_sparse_synthesizes_without_undeclared_signals(tmp_path, weight_kind, input_kind, out_mode):
    from bnnforge.hw.memfiles_sparse import build_sparse_layer

    mw, mh, pe, simd, k = 32, 16, 4, 8, 2
    ib = 4 if input_kind == "int" else 1
    rng = np.random.default_rng(7)
    if weight_kind == "sparse01":
        W = -1 + 8 * (rng.random((mh, mw)) < 0.05)
    else:   # 4 groups of 4x8: block-diagonal +-1
        W = np.kron(np.eye(4, dtype=np.int64), np.ones((4, 8), dtype=np.int64)) * (2 * rng.integers(0, 2, (mh, mw)) - 1)
    layer = build_sparse_layer(W, pe, simd, weight_kind)
    acc = 12
    T = None if out_mode == 1 else np.sort(rng.integers(-8, 8, (mh, 2 ** k - 1 if out_mode == 2 else 1)), axis=1)
    if out_mode == 0:
        T = T[:, 0]
    params = layer.write(tmp_path, input_kind, acc, thresholds=T)
    params.update(INPUT_BITS=ib, OUT_MODE=out_mode, OUT_BITS=k)
    ow = pe * {0: 1, 1: acc, 2: k}[out_mode]
    plist = ", ".join(f'.{n}("{v}")' if isinstance(v, str) else f".{n}({v})" for n, v in params.items())
    wrapper = tmp_path / "wrap.v"
    wrapper.write_text(f"""
module wrap (input clk, input rst_n, input [{simd * ib - 1}:0] in_data, input in_valid, output in_ready,
             output [{ow - 1}:0] out_data, output out_valid, input out_ready);
  mvtu_sparse #({plist}) u (
    .clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid), .in_ready(in_ready),
    .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    res = synthesize(rtl_sources("popcount", "popcount_compressor", "adder_tree", "sign_resize", "pipe_delay", "mvtu_sparse") + [wrapper], "wrap",
                     workdir=tmp_path)
    log = res.log_path.read_text()
    bad = [ln for ln in log.splitlines() if "Warning" in ln and any(s in ln for s in SUSPECT)]
    assert bad == [], bad[:3]
    trees = sum(m.count for m in res.modules.values() if m.base in ("popcount", "adder_tree"))
    assert trees >= pe
    assert res.total.lut_total >= pe * simd, res.total
    print(weight_kind, input_kind, out_mode, layer.stats(), res.total)
