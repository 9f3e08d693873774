"""The Vivado project: wrapper lint, the offline Tcl check (a recording stand-in, not
Vivado), bad boards/parts, unsafe manifest fields."""
import json
import os
import re
import shutil

import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.hw.vivado.project import write_project
from bnnforge.hw.vivado.tclcheck import check_project, run_standin, tcl_backend
from bnnforge.hw.vivado.wrapper import check_manifest

BACKENDS = [b for b in ("tkinter", "tclsh")
            if (b == "tclsh" and shutil.which("tclsh")) or (b == "tkinter" and tcl_backend() == "tkinter")]
needs_tcl = pytest.mark.skipif(not BACKENDS, reason="no Tcl interpreter (tclsh or Python tkinter)")


@pytest.mark.rtl
def test_wrapper_lint_clean(digits_project):
    from bnnforge.sim.runner import lint
    pj = json.loads((digits_project / "project.json").read_text())
    assert lint([digits_project / "src" / f for f in pj["verilog"]], pj["wrapper"]) == []


@needs_tcl
@pytest.mark.parametrize("backend", BACKENDS or ["none"])
def test_tcl_runs_against_standin(digits_project, backend):
    r = check_project(digits_project, backend)
    assert {"create_bd_cell", "connect_bd_intf_net", "launch_runs", "report_utilization"} <= set(r["commands"])
    assert {"digits_mlp_top.bit", "digits_mlp_top.hwh", "utilization.rpt", "timing_summary.rpt"} <= set(r["outputs"])
    assert "src/digits_mlp_top_dma.v" in r["sources_present"]
    assert not (digits_project / "output").exists()  # the check ran on a copy


@needs_tcl
def test_tcl_check_catches_missing_file_bad_port_and_unknown_command(digits_project, tmp_path):
    p = tmp_path / "p"
    shutil.copytree(digits_project, p)
    (p / "src" / "layer0_weights.mem").unlink()
    with pytest.raises(BnnforgeError, match="add_files: file does not exist: .*layer0_weights.mem"):
        check_project(p)
    shutil.rmtree(p)
    shutil.copytree(digits_project, p)
    tcl = (p / "make_project.tcl").read_text()
    (p / "make_project.tcl").write_text(tcl.replace("accel/m_axis]", "accel/n_axis]"))
    with pytest.raises(BnnforgeError, match="no AXI-Stream port n_axis_tdata"):
        check_project(p)
    (p / "make_project.tcl").write_text(tcl.replace("validate_bd_design", "validate_bd_desing"))
    with pytest.raises(BnnforgeError, match="invalid command name"):
        check_project(p)
    (p / "make_project.tcl").write_text(tcl.replace("set_property top", "set_property top {"))
    with pytest.raises(BnnforgeError, match="Tcl check failed"):
        check_project(p)


def test_tcl_names_board_part_and_clock(digits_project):
    tcl = (digits_project / "make_project.tcl").read_text()
    assert "set part     xc7z020clg400-1" in tcl and '"*:pynq-z2:*"' in tcl
    assert "set fclk_mhz 100" in tcl
    assert "CONFIG.c_m_axis_mm2s_tdata_width {64}" in tcl and "CONFIG.c_s_axis_s2mm_tdata_width {8}" in tcl


def test_bad_board_part_and_nothing_written(digits_build, tmp_path):
    out = tmp_path / "v"
    with pytest.raises(BnnforgeError, match="unknown board 'zedboard'"):
        write_project(digits_build, board="zedboard", out_dir=out)
    with pytest.raises(BnnforgeError, match="unknown part 'xc7z010clg400-1'"):
        write_project(digits_build, part="xc7z010clg400-1", out_dir=out)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("field,value,msg", [
    ("top", "x]; exec rm -rf ~; [", "field 'top' must be a plain identifier"),
    ("files", ["../../etc/passwd.v"], "not a plain Verilog file name"),
    ("in_width", 12, "whole bytes"),
    ("out_width", "8", "field 'out_width' must be a positive integer"),
])
def test_manifest_fields_checked_before_reaching_tcl(digits_build, field, value, msg):
    m = json.loads((digits_build / "rtl" / "manifest.json").read_text())
    m[field] = value
    with pytest.raises(BnnforgeError, match=msg):
        check_manifest(m)


def test_cli_vivado_without_vivado_on_path(digits_build, capsys, monkeypatch):
    from bnnforge.cli import main
    monkeypatch.setenv("PATH", "/nonexistent")
    before = sorted(p.name for p in digits_build.iterdir())
    assert main(["vivado", str(digits_build), "--run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bnnforge: error: vivado: not found on PATH; source Vivado's settings64.sh (or use docker/finn), "
                   "or drop --run to only write the project"]
    assert main(["synth", str(digits_build), "--vivado"]) == 2
    assert sorted(p.name for p in digits_build.iterdir()) == before


READMEM_WARNING = ("CRITICAL WARNING: [Synth 8-4445] could not open $readmem data file 'layer0_weights.mem'; "
                   "please make sure the file is added to project and has read permission, ignoring [mvtu.v:188]")


@needs_tcl
@pytest.mark.parametrize("backend", BACKENDS or ["none"])
@pytest.mark.parametrize("scenario,reason", [
    ({"readmem_warning": READMEM_WARNING},
     r"synthesis did not load a memory image: CRITICAL WARNING: \[Synth 8-4445\] could not open \$readmem "
     r"data file 'layer0_weights.mem'.* \(in .*bnn_bd_accel_0_synth_1/runme.log\)"),
    # any other $readmem message at error or critical-warning severity (a made-up message id)
    ({"readmem_warning": "ERROR: [Synth 8-9999] $readmem data file 'layer1_weights.mem' is malformed"},
     r"synthesis did not load a memory image: ERROR: \[Synth 8-9999\] \$readmem"),
    ({"bram18": 3}, r"block RAM: the accelerator implements 3 RAMB18 equivalents, the build expects 0 "
                    r"\(report/estimates.json\)"),
    ({"setup_slack": -0.25}, r"timing not met at 100 MHz: worst setup slack -0.25 ns on the path from "
                             r"bnn_bd_i/accel/inst/s1_mvtu/acc_reg\[3\]/C to bnn_bd_i/accel/inst/s1_mvtu/out_reg\[0\]/D "
                             r"\(see .*timing_summary.rpt\); lower the clock"),
    ({"hold_slack": -0.01}, r"timing not met at 100 MHz: worst hold slack -0.01 ns on the path from \S+ to \S+"),
    ({"clocks": 0}, r"timing: no clock is constrained"),
    ({"setup_slack": ""}, r"timing: no setup slack reported"),
])
def test_vivado_script_refuses_a_bad_result(digits_project, backend, scenario, reason):
    """Each self-check of the script, driven by the stand-in: the run fails with the reason,
    leaves it in output/check_failed.txt and copies no bitstream or .hwh out."""
    r = run_standin(digits_project, backend, scenario)
    assert r["error"] and re.search("bnnforge: " + reason, r["error"])
    assert re.search(reason, r["check_failed"])
    assert not {"digits_mlp_top.bit", "digits_mlp_top.hwh"} & set(r["outputs"])
    with pytest.raises(BnnforgeError, match="Tcl check failed: bnnforge: "):
        check_project(digits_project, backend, scenario)


@needs_tcl
def test_vivado_script_passes_when_everything_is_as_expected(digits_project, tmp_path):
    """The success branch: the stand-in's DMA has a RAMB36 of its own, which must not count,
    and the accelerator's RAMB36 count twice (3 = one RAMB36 + one RAMB18)."""
    r = run_standin(digits_project)
    assert r["error"] is None and r["check_failed"] is None
    assert {"digits_mlp_top.bit", "digits_mlp_top.hwh", "timing_summary.rpt"} <= set(r["outputs"])
    assert {"get_cells", "get_clocks", "get_timing_paths"} <= set(r["commands"])
    p = tmp_path / "p"
    shutil.copytree(digits_project, p)
    tcl = (p / "make_project.tcl").read_text()
    assert "set expect_bram18 0\n" in tcl
    (p / "make_project.tcl").write_text(tcl.replace("set expect_bram18 0\n", "set expect_bram18 3\n"))
    assert run_standin(p, scenario={"bram18": 3, "setup_slack": 0.0})["error"] is None
    r = run_standin(p, scenario={"bram18": 4})
    assert "implements 4 RAMB18 equivalents, the build expects 3" in r["error"]


def test_expected_block_ram_comes_from_the_estimates(digits_build, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(digits_build, b, ignore=shutil.ignore_patterns("vivado"))
    est = json.loads((b / "report" / "estimates.json").read_text())
    est["est_bram18_total"] = 7
    (b / "report" / "estimates.json").write_text(json.dumps(est))
    proj = write_project(b)
    assert json.loads((proj / "project.json").read_text())["expected_bram18"] == 7
    assert "set expect_bram18 7\n" in (proj / "make_project.tcl").read_text()
    for bad in ("7; exec rm -rf ~", -1, None):
        est["est_bram18_total"] = bad
        (b / "report" / "estimates.json").write_text(json.dumps(est))
        with pytest.raises(BnnforgeError, match="'est_bram18_total' must be a non-negative integer"):
            write_project(b, out_dir=tmp_path / "v2")
    (b / "report" / "estimates.json").unlink()
    with pytest.raises(BnnforgeError, match="estimates.json: not found"):
        write_project(b, out_dir=tmp_path / "v2")
    assert not (tmp_path / "v2").exists()


@pytest.mark.skipif(not shutil.which("tclsh"), reason="no tclsh")
@pytest.mark.parametrize("scenario,message", [
    ({"setup_slack": -1.5}, "no bitstream copied out: timing not met at 100 MHz: worst setup slack -1.5 ns"),
    ({}, None),
])
def test_cli_vivado_run_reports_the_scripts_refusal(digits_build, tmp_path, monkeypatch, capsys, scenario, message):
    """`bnnforge vivado --run` against a stand-in `vivado` on PATH (tclsh running the script
    with the recording stand-in): a refused result is one error line with the reason."""
    from bnnforge.cli import main
    from bnnforge.hw.vivado import tclcheck

    b = tmp_path / "b"
    shutil.copytree(digits_build, b, ignore=shutil.ignore_patterns("vivado"))
    driver = tmp_path / "standin_vivado.tcl"
    sc = dict(tclcheck.DEFAULT_SCENARIO, bram18=0, **scenario)
    driver.write_text("rename exit _real_exit\n" + tclcheck.STANDIN + tclcheck._scenario_tcl(sc)
                      + "if {[catch {source [lindex $argv end]} msg]} { _real_puts stderr $msg; _real_exit 1 }\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vivado").write_text(f'#!/bin/sh\nfor a; do last="$a"; done\nexec tclsh {driver} "$last"\n')
    (bindir / "vivado").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    rc = main(["vivado", str(b), "--run", "--no-capacity"])
    out, err = capsys.readouterr()
    out_dir = b / "vivado" / "output"
    if message is None:
        assert rc == 0 and (out_dir / "digits_mlp_top.bit").is_file()
        assert f"bitstream: {out_dir / 'digits_mlp_top.bit'}" in out
    else:
        assert rc == 2 and not (out_dir / "digits_mlp_top.bit").exists()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bnnforge: error: {out_dir / 'vivado.log'}: {message}")
