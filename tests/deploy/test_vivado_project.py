"""The Vivado project: wrapper lint, the offline Tcl check (a recording stand-in, not
Vivado), bad boards/parts, unsafe manifest fields."""
import json
import shutil

import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.hw.vivado.project import write_project
from bnnforge.hw.vivado.tclcheck import check_project, tcl_backend
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
