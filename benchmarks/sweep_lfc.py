"""A design-space sweep on local Ray, and the speed-up of 2 workers over 1, in one run.

    .venv/bin/python benchmarks/sweep_lfc.py [--sweep configs/sweeps/digits_mlp_targets.yaml] [--out runs/bench_sweep]
    .venv/bin/python benchmarks/sweep_lfc.py --sweep configs/sweeps/lfc_mnist_targets.yaml \
        --model runs/lfc.onnx      # after: bnnforge export --topology lfc --out runs/lfc.onnx

The sweep file's training spec is trained once; the same candidates then run twice
from an empty result store, on a local Ray with 1 and with 2 worker CPUs (Ray is
started before the clock starts, so the ratio is the candidates' own). Writes the
table (results.csv / results.json) and the Pareto plot (pareto.png) of each run
and prints the figures.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

import yaml

import bnnforge
from bnnforge.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default=str(REPO / "configs" / "sweeps" / "digits_mlp_targets.yaml"))
    ap.add_argument("--out", default="runs/bench_sweep")
    ap.add_argument("--model", default=None, help="an exported QONNX model instead of the sweep file's model")
    args = ap.parse_args()
    import logging

    import ray

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(Path(args.sweep).read_text())
    if args.model:
        data["model"] = {"onnx": str(Path(args.model).resolve())}
    elif "train" in data.get("model", {}):
        tr = load_sweep(args.sweep).model["train"]
        model = out / "model" / "model.onnx"
        if not model.is_file():
            t0 = time.perf_counter()
            res = bnnforge.train(out=out / "model", topology=tr.get("topology", "digits_mlp"),
                                 act=tr.get("act", "unipolar"), dataset=tr["dataset"], data_dir=tr.get("data_dir"),
                                 epochs=tr.get("epochs"), seed=tr["seed"], export=True)
            print(f"trained once: test accuracy {res['test_acc']:.4f} in {time.perf_counter() - t0:.1f} s")
        data["model"] = {"onnx": str(model.resolve())}
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    spec = load_sweep(sweep_file)
    walls = {}
    for workers in (1, 2):
        run_dir = out / f"workers{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            t0 = time.perf_counter()
            r = run_sweep(sweep_file, run_dir, progress=False, say=lambda m: None)
            walls[workers] = time.perf_counter() - t0
        finally:
            ray.shutdown()
        ok = [row for row in r["rows"] if row["status"] == "ok"]
        print(f"{workers} worker(s): {len(r['rows'])} candidates ({len(ok)} ok) in {walls[workers]:.1f} s; "
              f"{r['table']['csv']}, {r['plot']}")
    print("\n| target cycles | cycles/frame | frames/s | est. LUT | est. BRAM18 | accuracy (golden) | build s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in r["rows"]:
        if row["status"] != "ok":
            print(f"| {row.get('target_cycles')} | failed: {row['error']} |")
            continue
        acc = row.get("accuracy", row.get("accuracy_golden"))
        print(f"| {row.get('target_cycles')} | {row['cycles_per_frame_ideal']:,} | {row['fps']:,.0f} | "
              f"{row['est_luts']:,} | {row['est_bram18']} | {acc if acc is None else f'{acc:.4f}'} | "
              f"{row['build_seconds']:.2f} |")
    print(f"\nspeed-up of 2 local workers over 1: {walls[1] / walls[2]:.2f}x "
          f"({walls[1]:.1f} s -> {walls[2]:.1f} s, {len(spec.candidates)} candidates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
