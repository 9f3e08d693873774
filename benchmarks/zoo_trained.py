"""Trained zoo TFCs in RTL: Brevitas' `brevitas_examples.bnn_pynq` TFC in 1W1A, 1W2A and
2W2A, trained on the MNIST digits (the first 8,000 of ../shared/datasets/mnist-t10k),
exported with Brevitas' documented `export_qonnx` (dynamo, the default), built at the
finn-examples TFC folding. On all 2,000 evaluation images (the last 2,000): torch's
accuracy, the golden model's (on the hardware graph) and the RTL's (Verilator bulk
harness, every output beat compared with the golden model), the label mismatches between
them, and the measured against the ideal cycles per frame.

Ties: the zoo's logits are integers under one common affine (TensorNorm), so torch's
float argmax can tie exactly; numpy's argmax of the logits and the hardware's label select both return
the lowest index of the maximum, and the tied images are counted in the table.

    .venv/bin/python benchmarks/zoo_trained.py [--epochs 10] [--models tfc_1w1a,tfc_1w2a,tfc_2w2a]

Prints a table and writes benchmarks/results/zoo_trained.md and .json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
OUT = REPO / "benchmarks" / "results"
STEPS = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"]


def train(name: str, x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = model_with_cfg(name, pretrained=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def run(name: str, split, tmp: Path, epochs: int, seed: int) -> dict:
    import onnx
    import torch
    from brevitas.export import export_qonnx

    import bnnforge
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs
    from bnnforge.zoo import folding_for

    xe, ye = split.test.x, np.asarray(split.test.y)
    t0 = time.perf_counter()
    model = train(name, split.train.x, np.asarray(split.train.y), epochs, seed)
    row = {"model": name, "epochs": epochs, "train_s": round(time.perf_counter() - t0, 1), "images": len(xe)}
    with torch.no_grad():
        logits = model(torch.from_numpy(xe)).numpy()
    torch_labels = logits.argmax(1)  # lowest index among equal maxima, as the label select
    row["torch_ties"] = int(np.sum((logits == logits.max(1, keepdims=True)).sum(1) > 1))
    path = tmp / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.rand(1, 1, 28, 28), str(path))
    b = tmp / f"build_{name}"
    t0 = time.perf_counter()
    bnnforge.build(path, b, folding=folding_for(name), steps=STEPS)
    row["build_s"] = round(time.perf_counter() - t0, 1)
    streamlined = onnx.load(str(b / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(b / "final_model.onnx"))
    q = quantize_inputs(streamlined, xe)
    golden = execute(hw, q).reshape(-1)
    res = run_network_bulk(b / "rtl", q, golden)
    rtl = np.asarray(res["labels_rtl"]).reshape(-1)
    row.update(
        torch_acc=float(np.mean(torch_labels == ye)),
        golden_acc=float(np.mean(golden == ye)),
        rtl_acc=float(np.mean(rtl == ye)) if len(rtl) == len(ye) else None,
        torch_vs_golden=int(np.sum(torch_labels != golden)),
        rtl_beat_mismatches=res["rtl_mismatches"],
        rtl_vs_golden=int(np.sum(rtl != golden)) if len(rtl) == len(ye) else len(ye),
        tlast=bool(res["tlast_correct"]) and res["extra_beats"] == 0,
        cycles_measured=res["cycles_per_frame_measured"],
        cycles_ideal=res["cycles_per_frame_ideal"],
    )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="tfc_1w1a,tfc_1w2a,tfc_2w2a")
    args = ap.parse_args(argv)
    if not MNIST.is_dir():
        print(f"skipped: {MNIST} not found (the MNIST digits sit beside the project)")
        return 0
    import torch

    from bnnforge.models.data import load_mnist

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = load_mnist(MNIST)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.append(run(name, split, Path(tmp), args.epochs, args.seed))
            print(json.dumps(rows[-1]), flush=True)
    head = ["model", "train s", "torch acc", "golden acc", "RTL acc", "torch != golden", "torch ties",
            "RTL beat mismatches", "cycles/frame measured (ideal)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rtl_acc = "n/a" if r["rtl_acc"] is None else f"{r['rtl_acc']:.4f}"
        lines.append(f"| {r['model']} | {r['train_s']} | {r['torch_acc']:.4f} | {r['golden_acc']:.4f} | {rtl_acc} | "
                     f"{r['torch_vs_golden']} of {r['images']} | {r['torch_ties']} | "
                     f"{r['rtl_beat_mismatches']} | {r['cycles_measured']:.1f} ({r['cycles_ideal']}) |")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(exist_ok=True)
    cmd = "benchmarks/zoo_trained.py" + ("" if argv is None else " " + " ".join(argv))
    (OUT / "zoo_trained.md").write_text(f"Command: `.venv/bin/python {cmd}`\n\n{table}\n")
    (OUT / "zoo_trained.json").write_text(json.dumps(rows, indent=1))
    exact = all(r["torch_vs_golden"] == 0 and r["rtl_vs_golden"] == 0 and r["rtl_beat_mismatches"] == 0
                and r["tlast"] for r in rows)
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
