"""step_synth: Yosys synth_xilinx (xc7) resource estimate of the generated RTL, and the clock
the stages allow by their xc7 logic delay (Yosys sta; `bnnforge synth BUILD --timing pnr`
adds the ECP5 post-route Fmax)."""
import json
from pathlib import Path

import onnx


def step_synth(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    from bnnforge.hw.synth import synthesize
    from bnnforge.hw.timing import build_timing

    rtl = Path(cfg.build_dir) / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    res = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
    timing = build_timing(Path(cfg.build_dir), "sta")["sta"]
    report = Path(cfg.build_dir) / "report"
    report.mkdir(exist_ok=True)
    fmax = timing["fmax_mhz"]
    (report / "synth_summary.json").write_text(json.dumps({
        "luts": res.total.lut_total, "ffs": res.total.ff, "bram18": res.total.bram18,
        "dsp": res.total.dsp, "utilisation_percent": res.utilisation, "seconds": res.elapsed_s,
        "timing": {
            "estimate": timing["estimate"], "fmax_mhz": fmax, "frames_per_s": timing["frames_per_s"],
            "worst_stage": timing["worst_stage"],
            "stages": [{k: s[k] for k in ("stage", "module", "logic_delay_ns", "fmax_mhz", "start", "end")}
                       for s in timing["stages"]],
            "target_clock_mhz": cfg.fclk_mhz,
            # logic alone is a lower bound on the period: missing the target here means missing it on the board
            "logic_meets_target_clock": None if fmax is None else fmax >= cfg.fclk_mhz,
        }}, indent=2))
    restate_estimates(Path(cfg.build_dir))
    return model


def restate_estimates(build: Path) -> None:
    """The estimates table quoted frames/s at the assumed target clock; now that a clock
    is measured, restate it there (estimates.json keeps the target-clock figure)."""
    from bnnforge.hw.throughput import throughput

    from .estimates import write_markdown

    report = build / "report"
    if (report / "estimates.json").is_file():
        est = json.loads((report / "estimates.json").read_text())
        write_markdown(report, est, throughput(est["cycles_per_frame_ideal"], build, est["fclk_mhz"]))
