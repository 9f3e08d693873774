"""step_synth: Yosys synth_xilinx (xc7) resource estimate of the generated RTL."""
import json
from pathlib import Path

import onnx


def step_synth(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    from bnnforge.hw.synth import synthesize

    rtl = Path(cfg.build_dir) / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    res = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
    report = Path(cfg.build_dir) / "report"
    report.mkdir(exist_ok=True)
    (report / "synth_summary.json").write_text(json.dumps({
        "luts": res.total.lut_total, "ffs": res.total.ff, "bram18": res.total.bram18,
        "dsp": res.total.dsp, "utilisation_percent": res.utilisation, "seconds": res.elapsed_s}, indent=2))
    return model
