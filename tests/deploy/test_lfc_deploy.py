"""LFC (BNN-PYNQ folding) all the way to a board package: the Tcl passes the offline
check, the PYNQ driver backed by the simulated wrapper + accelerator classifies 100
inputs exactly as the golden model, the deployment package is written and its
validation script passes on the simulated DMA. Slow (LFC RTL, about a minute)."""
import json
import sys

import numpy as np
import pytest

from bnnforge.deploy import SimIO, golden_outputs, sample_inputs, verify_with_sim
from bnnforge.hw.vivado.project import write_project
from bnnforge.hw.vivado.tclcheck import check_project, tcl_backend
from tests.deploy.conftest import _build


@pytest.mark.rtl
@pytest.mark.slow
def test_lfc_project_driver_and_package(tmp_path):
    from bnnforge.cli import main

    (tmp_path / "b").mkdir()
    bdir = _build(tmp_path / "b", topology="lfc", act="bipolar", folding="lfc_bnn_pynq.json", seed=41)
    proj = write_project(bdir, board="pynq-z1")
    if tcl_backend() is not None:
        r = check_project(proj)
        assert "src/lfc_top_dma.v" in r["sources_present"]
        assert {"lfc_top.bit", "lfc_top.hwh"} <= set(r["outputs"])
    lay = json.loads((proj / "accel.json").read_text())
    assert lay["input"]["elements"] == 784 and lay["cycles_per_frame_ideal"] == 512
    x = sample_inputs(lay, 100, seed=12)
    exp = golden_outputs(bdir, x)
    res = verify_with_sim(proj, x, exp, batch_size=50)
    assert res["frames"] == 100 and res["mismatches"] == 0 and np.array_equal(res["outputs"], exp)
    assert len(np.unique(exp)) > 1

    out = tmp_path / "pkg"
    assert main(["deploy", str(bdir), "--out", str(out), "--samples", "100", "--board", "pynq-z1"]) == 0
    info = json.loads((out / "manifest.json").read_text())
    assert info["sim_check"]["frames"] == 100 and info["sim_check"]["mismatches"] == 0
    sys.path.insert(0, str(out))
    try:
        import importlib
        validate = importlib.import_module("pynq_driver.validate")
        assert validate.main(["--dataset", str(out / "sample" / "sample.npz"),
                              "--layout", str(out / "pynq_driver" / "accel.json")], io=SimIO(bdir / "vivado")) == 0
    finally:
        sys.path.remove(str(out))
        for m in [m for m in sys.modules if m.startswith("pynq_driver")]:
            del sys.modules[m]
