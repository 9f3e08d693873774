"""Bulk RTL verification sharded over Ray workers (`bnnforge sim --ray`) against the
serial run, on LFC at the BNN-PYNQ folding (512 cycles/frame), in one run.

    .venv/bin/python benchmarks/sim_ray.py [--frames 2000] [--workers 2] [--chunk 256] [--out runs/bench_sim_ray]

The images are the first --frames real MNIST test digits when ../shared/datasets/mnist-t10k
exists beside the repository (random images otherwise); the network is a random-init LFC
(the figure is the simulation's speed, not the accuracy). The build and the Verilator
model are made once and not timed. Then the same images go through the RTL
(`bnnforge.simulate_dataset.simulate`, what `bnnforge sim` runs)
serially, with --ray (a local Ray started and stopped by the call: what a user waits for)
and with --ray on a Ray already running; the figures of all three must be identical
apart from the wall times.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

import bnnforge

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
TIMING = {"quantize_golden_seconds", "sim_seconds", "total_seconds", "ray_workers"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--out", default="runs/bench_sim_ray")
    a = ap.parse_args()
    import torch

    from bnnforge.cluster import ray_session
    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model, randomize_batchnorm
    from bnnforge.simulate_dataset import simulate

    out = Path(a.out)
    build = out / "build"
    if MNIST.is_dir():
        from bnnforge.models.data import load_mnist

        test = load_mnist(MNIST).test
        x, y, source = test.x[:a.frames], test.y[:a.frames], "real MNIST test digits"
    else:
        x = np.random.default_rng(0).random((a.frames, 1, 28, 28), dtype=np.float32)
        y, source = None, "random images (no MNIST beside the repository)"
    if not (build / "rtl" / "manifest.json").is_file():
        model = build_model("lfc", "bipolar")
        randomize_batchnorm(model, torch.Generator().manual_seed(0))
        model.eval()
        out.mkdir(parents=True, exist_ok=True)
        export_qonnx(model, out / "lfc.onnx", (1, 1, 28, 28))
        bnnforge.build(out / "lfc.onnx", build, name="lfc", folding=bnnforge.shipped_folding("lfc_bnn_pynq.json"),
                       steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    t0 = time.perf_counter()
    bnnforge.simulate(build, x[:8])   # compiles the Verilator model once (cached), untimed
    print(f"LFC build and Verilator model ready ({time.perf_counter() - t0:.1f} s); {len(x)} {source}, "
          f"chunks of {a.chunk}")

    runs = {}
    t0 = time.perf_counter()
    runs["serial"] = (simulate(build, x, y, chunk_size=a.chunk), time.perf_counter() - t0)
    t0 = time.perf_counter()
    runs[f"--ray, {a.workers} workers (Ray started by the call)"] = (
        simulate(build, x, y, chunk_size=a.chunk, ray=True, workers=a.workers), time.perf_counter() - t0)
    with ray_session(workers=a.workers):
        t0 = time.perf_counter()
        runs[f"--ray, {a.workers} workers (Ray already running)"] = (
            simulate(build, x, y, chunk_size=a.chunk, ray=True), time.perf_counter() - t0)

    ref = {k: v for k, v in runs["serial"][0].items() if k not in TIMING}
    same = all({k: v for k, v in r.items() if k not in TIMING} == ref for r, _ in runs.values())
    serial_wall = runs["serial"][1]
    print("\n| run | wall s | sim s (sum over chunks) | speed-up | frames | mismatching | cycles/frame | accuracy (RTL) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (r, wall) in runs.items():
        acc = f"{r['accuracy_rtl']:.4f}" if "accuracy_rtl" in r else "n/a"
        print(f"| {name} | {wall:.1f} | {r['sim_seconds']:.1f} | {serial_wall / wall:.2f}x | {r['frames']:,} | "
              f"{r['frames_mismatching']} | {r['cycles_per_frame_measured']} | {acc} |")
    print(f"\nfigures identical to the serial run (all but wall times): {same}")
    return 0 if same and ref["frames_mismatching"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
