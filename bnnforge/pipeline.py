"""The main job, end to end on the bundled 8x8 digits: train the digits MLP with {0,1}
activations, export to QONNX, build, simulate the RTL on the whole test split,
synthesize with Yosys, and write a report directory.

Three levels must agree: torch (argmax), golden (integers), RTL (bit-exact with golden).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.report_html import write_demo_report
from bnnforge.hw.throughput import throughput
from bnnforge.resources import folding_config

DEMO_FOLDING = folding_config("digits_mlp.json")
# hw/timing.py: the xc7 logic delay of every stage, as the synth step measures it. The ECP5
# place and route ("pnr") takes 10-15 minutes for this network on two cores, too long for
# the demo; `bnnforge synth runs/demo/build --timing pnr` measures it.
DEMO_TIMING = "sta"


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[demo] {msg}", flush=True)


def run_demo(out: Path, epochs: int = 20, quiet: bool = False, synth: bool = True,
             topology: str = "digits_mlp", act: str = "unipolar") -> Path:
    import onnx
    import torch

    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config
    from bnnforge.finn_flows.steps.estimates import plot_layers
    from bnnforge.models.data import load_digits
    from bnnforge.models.export import check_export, export_qonnx
    from bnnforge.models.topologies import build_model
    from bnnforge.models.train import seed_everything, train
    from bnnforge.sim.golden import execute, quantize_inputs
    from bnnforge.sim.network import run_network

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: dict = {"topology": topology, "activation": act}

    # 1. train
    data = load_digits()
    seed_everything(0)  # weight init too, not only the training run: the demo is reproducible
    # Multi-threaded float reductions round differently with the core count, and 20 epochs
    # amplify that into a different model; one thread gives the same digits everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = build_model(topology, act)
    _say(f"training {topology} ({act} activations) on {len(data.train.y)} digits, {epochs} epochs", quiet)
    t0 = time.perf_counter()
    try:
        train(model, data, out / "train", epochs=epochs, batch_size=64, lr=0.01, seed=0,
              meta=model.meta(), progress=not quiet)
    finally:
        torch.set_num_threads(threads)
    report["train_seconds"] = round(time.perf_counter() - t0, 2)
    model.eval()

    # 2. export + check
    onnx_path = export_qonnx(model, out / "model.onnx", (1,) + tuple(model.spec.input_shape))
    chk = check_export(model, onnx_path, data.test.x[:32])
    report["export_max_abs_diff"] = chk["max_abs_diff"]
    _say(f"exported {onnx_path}; torch vs qonnx max abs diff {chk['max_abs_diff']:.3g}", quiet)

    # 3. build (QONNX -> Verilog)
    cfg = load_config(None, model=str(onnx_path), output_dir=str(out / "build"), name=topology,
                      folding_config_file=str(DEMO_FOLDING),
                      steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    summary = build(cfg, progress=not quiet)
    report["build_seconds"] = summary["build_seconds"]
    _say(f"built RTL in {summary['build_seconds']:.2f} s: {out / 'build' / 'rtl'}", quiet)
    hw_model = onnx.load(str(out / "build" / "final_model.onnx"))
    streamlined = onnx.load(str(out / "build" / "intermediate_models" / "01_streamline.onnx"))

    # 4. three levels on the whole test split
    x, y = data.test.x, data.test.y
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x)).argmax(1).numpy()
    q = quantize_inputs(streamlined, x)
    golden_pred = execute(hw_model, q)
    _say(f"simulating the RTL on {len(y)} test images (Verilator)", quiet)
    sim = run_network(out / "build" / "rtl", q, golden_pred)
    rtl_pred = np.array(sim["labels_rtl"])
    report.update({
        "test_images": int(len(y)),
        "accuracy_torch": float(np.mean(torch_pred == y)),
        "accuracy_golden": float(np.mean(golden_pred == y)),
        "accuracy_rtl": float(np.mean(rtl_pred == y)),
        "golden_vs_torch_agreement": float(np.mean(golden_pred == torch_pred)),
        "rtl_mismatches": int(sim["rtl_mismatches"]),
        "cycles_per_frame_measured": sim["cycles_per_frame_measured"],
        "cycles_per_frame_ideal": sim["cycles_per_frame_ideal"],
        "latency_cycles_first_frame": sim["latency_cycles_first_frame"],
        "rtlsim_seconds": sim["sim_wall_seconds"],
        "rtlsim_cycles_per_second": round(sim["sim_cycles_per_second"]),
    })
    est = json.loads((out / "build" / "report" / "estimates.json").read_text())
    report["fclk_mhz"] = est["fclk_mhz"]

    # 5. synthesis estimate
    report["luts"] = None
    if synth:
        from bnnforge.hw.synth import synthesize

        rtl = out / "build" / "rtl"
        manifest = json.loads((rtl / "manifest.json").read_text())
        _say("synthesizing with Yosys (synth_xilinx, xc7)", quiet)
        res = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
        report.update({"luts": res.total.lut_total, "ffs": res.total.ff, "bram18": res.total.bram18,
                       "dsp": res.total.dsp, "synth_seconds": round(res.elapsed_s, 1)})
        report["timing_seconds"] = _measure_clock(out / "build", quiet)

    # frames/s at the clock just measured, or at the target clock said to be assumed
    tp = throughput(sim["cycles_per_frame_measured"], out / "build", est["fclk_mhz"])
    report.update({"fps": tp["frames_per_s"], "clock_mhz": tp["clock_mhz"], "clock_measured": tp["measured"],
                   "clock_source": tp["source"], "throughput": tp["text"]})
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)

    # 6. report
    rdir = out / "report"
    rdir.mkdir(exist_ok=True)
    (rdir / "report.json").write_text(json.dumps(report, indent=2))
    if (out / "train" / "curve.png").exists():
        shutil.copyfile(out / "train" / "curve.png", rdir / "training_curve.png")
    plot_layers(est, rdir / "layer_cycles.png")
    (rdir / "report.md").write_text(_markdown(report, est, out / "build"))
    write_demo_report(out, report)
    if not quiet:
        print(_summary(report))
    if report["rtl_mismatches"] or report["golden_vs_torch_agreement"] != 1.0:
        raise BnnforgeError(f"{rdir / 'report.json'}: the three levels disagree (see report)")
    return rdir


def _measure_clock(build: Path, quiet: bool) -> float | None:
    """The clock the design's logic allows (DEMO_TIMING); when the tools fail the demo
    goes on and says its frames/s are at an assumed clock."""
    from bnnforge.finn_flows.steps.synth import restate_estimates
    from bnnforge.hw.timing import build_timing

    _say("timing: xc7 logic delay of every stage (Yosys sta)", quiet)
    t0 = time.perf_counter()
    try:
        build_timing(build, DEMO_TIMING)
    except BnnforgeError as e:
        _say(f"clock not measured ({e})", quiet)
        return None
    restate_estimates(build)
    return round(time.perf_counter() - t0, 1)


def _summary(r: dict) -> str:
    luts = f"{r['luts']:,}" if r.get("luts") is not None else "n/a"
    return "\n".join([
        f"accuracy on {r['test_images']} test digits: torch {r['accuracy_torch']:.4f}, "
        f"golden {r['accuracy_golden']:.4f}, RTL {r['accuracy_rtl']:.4f} "
        f"(golden = torch on {r['golden_vs_torch_agreement']:.2%}, RTL mismatches {r['rtl_mismatches']})",
        f"cycles/frame: measured {r['cycles_per_frame_measured']:.1f}, ideal {r['cycles_per_frame_ideal']} "
        f"-> {r['throughput']}",
        f"LUTs (Yosys synth_xilinx): {luts}; build {r['build_seconds']:.2f} s; total {r['total_seconds']:.0f} s",
    ])


def _markdown(r: dict, est: dict, build: Path) -> str:
    from bnnforge.finn_flows.steps.estimates import format_table

    return "\n".join([
        f"# bnnforge report: {r['topology']} ({r['activation']} activations)", "",
        "## Summary", "", "```", _summary(r), "```", "",
        "## Layers", "", format_table(est, throughput(est["cycles_per_frame_ideal"], build, est["fclk_mhz"])), "",
        "![cycles and LUTs per layer](layer_cycles.png)", "",
        "## Training", "", "![training curve](training_curve.png)", "",
        "Machine-readable figures: `report.json`; the whole report as one page: `index.html`.", ""])
