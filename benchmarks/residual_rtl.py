"""A trained residual BNN in RTL: bit-exact against the golden model, at its ideal rate,
under stalls and across a reset.

For an exported residual network (e.g. the Si-BNN ResNet that
`benchmarks/residual_vs_chain.py --export-dir DIR` trains on MNIST and leaves in
DIR/sibnn_resnet/model_dynamo.onnx): build it (automatic folding for --target-cycles),
then, on the MNIST evaluation images (the last 2,000 of ../shared/datasets/mnist-t10k):
the golden model's labels and accuracy on all of them; the generated RTL (Verilator bulk
harness) on the first --rtl N, every output beat compared with the golden model, with the
measured cycles per frame against the ideal; then five input-gap / output-stall duty
cycles (0.1 .. 0.9) on --stall-frames frames each and a reset in the middle of a frame.

    .venv/bin/python benchmarks/residual_rtl.py --model DIR/sibnn_resnet/model_dynamo.onnx
        [--target-cycles 20736] [--rtl 200] [--stall-frames 40]

Prints a table and writes benchmarks/results/residual_rtl.md and .json.
"""
import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
DUTY = (0.1, 0.3, 0.5, 0.7, 0.9)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="exported residual network (QONNX)")
    ap.add_argument("--target-cycles", type=int, default=20736)
    ap.add_argument("--rtl", type=int, default=200, help="evaluation images simulated in RTL")
    ap.add_argument("--stall-frames", type=int, default=40)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "residual_rtl"))
    args = ap.parse_args(argv)
    if not MNIST.is_dir():
        print(f"skipped: {MNIST} not found (the MNIST digits sit beside the project)")
        return 0
    import onnx

    from bnnforge import api
    from bnnforge.models.data import load_mnist
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs
    from bnnforge.sim.network import expected_beats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = load_mnist(MNIST).test
    x, y = test.x.astype(np.float32), np.asarray(test.y)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        b = Path(tmp) / "build"
        api.build(args.model, b, target_cycles=args.target_cycles,
                  steps=["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding",
                         "estimates", "codegen"])
        rows["build_seconds"] = round(time.perf_counter() - t0, 2)
        st = onnx.load(str(b / "intermediate_models" / "01_streamline.onnx"))
        hw = onnx.load(str(b / "final_model.onnx"))
        man = json.loads((b / "rtl" / "manifest.json").read_text())
        est = json.loads((b / "report" / "estimates.json").read_text())
        q = quantize_inputs(st, x)
        labels = execute(hw, q)
        rows.update(images=len(x), golden_accuracy=float((labels == y).mean()),
                    ideal_cycles=man["ideal_cycles_per_frame"], est_luts=est["est_luts_total"],
                    adds=sum(n.op_type == "StreamAdd" for n in hw.graph.node))
        n = min(args.rtl, len(x))
        r = run_network_bulk(b / "rtl", q[:n], labels[:n])
        rows["rtl"] = dict(frames=n, mismatches=r["rtl_mismatches"], tlast=r["tlast_correct"],
                           cycles_per_frame=r["cycles_per_frame_measured"],
                           labels_equal=bool(np.array_equal(np.array(r["labels_rtl"]), labels[:n])))
        m = min(args.stall_frames, n)
        expected = [int(v) for v in expected_beats(labels[:m], man)]
        stalls = []
        for k, p in enumerate(DUTY):
            r = run_network_bulk(b / "rtl", q[:m], labels[:m], p_gap=p, p_stall=p, seed=k)
            stalls.append(dict(duty=p, frames=m, mismatches=r["rtl_mismatches"],
                               outputs_equal=[int(v) for v in r["outputs"]] == expected,
                               cycles_per_frame=r["cycles_per_frame_measured"]))
        clean = run_network_bulk(b / "rtl", q[:m], labels[:m])
        at = int(man["ideal_cycles_per_frame"] * m * 0.4) + 3
        r = run_network_bulk(b / "rtl", q[:m], labels[:m], p_gap=0.2, p_stall=0.2, seed=11, reset_at_cycle=at)
        info = r["reset"]
        before = info["beats_before_reset"]
        reset_ok = (r["outputs"][:before] == clean["outputs"][:before]
                    and [int(v) for v in r["outputs"][before:]] == expected[info["restart_frame"]:])
        rows["stalls"] = stalls
        rows["reset"] = dict(at_cycle=at, restart_frame=info["restart_frame"], outputs_equal=bool(reset_ok))
    lines = [f"# Trained residual BNN in RTL ({Path(args.model).name})", "",
             f"MNIST evaluation images: {rows['images']:,}; golden accuracy {rows['golden_accuracy']:.4f}; "
             f"{rows['adds']} residual adds; build {rows['build_seconds']} s; estimated {rows['est_luts']:,} LUT.",
             "", "| run | frames | mismatches | cycles/frame (ideal " f"{rows['ideal_cycles']:,}) | outputs equal |",
             "|---|---:|---:|---:|---|",
             f"| clean | {rows['rtl']['frames']} | {rows['rtl']['mismatches']} | "
             f"{rows['rtl']['cycles_per_frame']:,.1f} | {rows['rtl']['labels_equal']} |"]
    for s in rows["stalls"]:
        lines.append(f"| gaps/stalls {s['duty']:.1f} | {s['frames']} | {s['mismatches']} | "
                     f"{s['cycles_per_frame']:,.1f} | {s['outputs_equal']} |")
    lines.append(f"| reset at cycle {rows['reset']['at_cycle']:,} | {args.stall_frames} | - | - | "
                 f"{rows['reset']['outputs_equal']} (restart at frame {rows['reset']['restart_frame']}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    ok = rows["rtl"]["mismatches"] == 0 and all(s["mismatches"] == 0 and s["outputs_equal"] for s in stalls) \
        and rows["reset"]["outputs_equal"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
