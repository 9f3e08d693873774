"""Residual BNNs (models/residual.py) against chain CNV-style nets of similar size, trained the
same way, side by side: accuracy, parameter counts, and (where `bnnforge build` compiles the
net) estimated LUTs and ideal cycles per frame.

Pairs (block: residual net vs chain net):
  sibnn  configs/methods/sibnn_resnet.yaml (stem 16; blocks 16, 32/2, 32/2; flatten)
         vs Si-BNN blocks in the chain conv net of bipolar_cnv.yaml (convs 16, 32, 32 with 2x2
         pools after the second and third, FC 64)
  ftbnn  configs/methods/ftbnn_resnet.yaml (stem 16; blocks 16, 16, 32/2, 32; flatten)
         vs configs/methods/ftbnn_cnv.yaml (the same chain conv net, FTBNN blocks)
Every net: the same epochs, batch size 64, lr 0.01 cosine, seed, one torch thread.

Data: the real MNIST digits in ../shared/datasets/mnist-t10k when present (first 8,000 for
training, last 2,000 for evaluation), else scikit-learn's 8x8 digits (said in the table).
Each residual net is exported with both Brevitas exporters (TorchScript and dynamo), its
graph checked against the residual idiom (models.residual.residual_adds), and qonnx's
execution compared with torch on the first --check evaluation images. Every net is then
compiled (`bnnforge build`, folded for --target-cycles): estimated LUTs and ideal cycles,
the golden model's labels on all evaluation images against torch's, and with --rtl N the
generated RTL on the first N images (Verilator bulk harness, every output beat compared
with the golden model; measured cycles per frame).

    .venv/bin/python benchmarks/residual_vs_chain.py [--epochs 4] [--seed 0] [--pairs sibnn,ftbnn]
        [--check 200] [--export-dir DIR] [--no-build] [--target-cycles 20736] [--rtl 200] [--digits]

Writes benchmarks/results/residual_vs_chain.md and .json (residual_vs_chain_<pairs>.* for a
subset of the pairs). With --export-dir the training
runs (checkpoint, metrics) and the residual nets' QONNX files stay in DIR/<net>/.
"""
import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
CHAIN_CONV = dict(conv=[16, 32, 32], pool_after=[1, 2], conv_pad=0, hidden=[64])
PAIRS = {
    "sibnn": [("sibnn_resnet", "residual", dict(config="sibnn_resnet")),
              ("sibnn", "chain", dict(config="sibnn", **CHAIN_CONV))],
    "ftbnn": [("ftbnn_resnet", "residual", dict(config="ftbnn_resnet")),
              ("ftbnn", "chain", dict(config="ftbnn_cnv"))],
}


def load_data(digits: bool = False):
    from bnnforge.models.data import load_dataset, load_mnist

    if MNIST.is_dir() and not digits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the t10k-only split is announced by a UserWarning
            return load_mnist(MNIST), "MNIST t10k (8,000 train / 2,000 eval)"
    return load_dataset("digits"), "8x8 digits (no ../shared/datasets/mnist-t10k)"


def shape_of(model, form: str) -> str:
    if form == "residual":
        s = model.spec
        stages = ", ".join(f"{w}x{n}" + ("/2" if i else "") for i, (w, n) in enumerate(s.stages))
        return (f"stem {s.stem}; stages {stages}; {s.block} blocks; {s.act_bits}-bit "
                f"{s.binary_act if s.act_bits == 1 else 'unsigned'}; {s.head}")
    s = model.spec
    return f"convs {', '.join(map(str, s.conv))} (pools after {list(s.pool_after)}); FC {', '.join(map(str, s.hidden))}"


def export_both(model, out: Path, x: np.ndarray) -> dict:
    from bnnforge.models.export import check_export, export_qonnx
    from bnnforge.models.residual import residual_adds

    shape = (1,) + tuple(model.spec.input_shape)
    res = {}
    for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
        t0 = time.perf_counter()
        path = export_qonnx(model, out / f"model_{exporter}.onnx", shape, dynamo=dynamo)
        chk = check_export(model, path, x)
        res[exporter] = {"path": str(path), "adds": len(residual_adds(path)), "max_abs_diff": chk["max_abs_diff"],
                         "argmax_agreement": chk["argmax_agreement"], "images": chk["inputs"],
                         "seconds": round(time.perf_counter() - t0, 1)}
    return res


HW_STEPS = ["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding", "estimates"]


def try_build(onnx_path: Path, out: Path, target_cycles: int, model=None, data=None, n_rtl: int = 0,
              seed: int = 0) -> dict:
    """Estimated LUTs and ideal cycles per frame from `bnnforge build` (folded automatically
    for `target_cycles`), or the compiler's one-line error. With `model` and `data`: the
    golden model's labels on every evaluation image against torch's, and with n_rtl > 0 the
    generated RTL (Verilator bulk harness) on the first n_rtl of them, every output beat
    compared with the golden model, and the measured cycles per frame."""
    import onnx

    import bnnforge
    from bnnforge.errors import BnnforgeError

    t0 = time.perf_counter()
    try:
        bnnforge.build(onnx_path, out, steps=HW_STEPS + (["codegen"] if n_rtl else []), target_cycles=target_cycles)
    except BnnforgeError as e:
        return {"error": str(e)}
    est = json.loads((out / "report" / "estimates.json").read_text())
    row = {"est_lut": est["est_luts_total"], "cycles_ideal": est["cycles_per_frame_ideal"],
           "build_seconds": round(time.perf_counter() - t0, 1)}
    if model is None:
        return row
    from bnnforge.sim.golden import execute, quantize_inputs

    streamlined = onnx.load(str(out / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(out / "final_model.onnx"))
    x, y = np.asarray(data.test.x, dtype=np.float32), np.asarray(data.test.y)
    with torch.no_grad():
        t = model(torch.from_numpy(x)).numpy().argmax(1)
    q = quantize_inputs(streamlined, x)
    g = execute(hw, q)
    labels = g if g.ndim == 1 else g.argmax(1)
    row.update(golden_images=len(x), acc_golden=float((labels == y).mean()),
               golden_eq_torch=float((labels == t).mean()))
    if n_rtl:
        from bnnforge.sim.bulk import run_network_bulk

        sim = run_network_bulk(out / "rtl", q[:n_rtl], g[:n_rtl], seed=seed)
        row.update(rtl_frames=sim["frames"], rtl_mismatches=sim["rtl_mismatches"],
                   cycles_measured=sim["cycles_per_frame_measured"])
    return row


def run(name: str, form: str, kw: dict, data, out: Path, epochs: int, seed: int, n_check: int,
        build_cycles: int | None, n_rtl: int = 0) -> dict:
    from bnnforge.models.methods import load_method_config, train_method
    from bnnforge.models.residual import parameter_counts

    kw = dict(kw)
    cfg = load_method_config(kw.pop("config"))
    if form == "chain" and data.input_shape[1] < 28:
        kw["conv_pad"] = 1    # three unpadded 3x3 convs and two pools do not fit an 8x8 digit
    t0 = time.perf_counter()
    res = train_method(name, data, out / "train", epochs, seed, config=cfg, num_threads=1, **kw)
    model = res["model"].eval()
    row = {"net": name, "form": form, "shape": shape_of(model, form), **parameter_counts(model),
           "test_acc": res["test_acc"], "best_test_acc": res["best_test_acc"],
           "train_seconds": round(res["train_seconds"], 1)}
    x = np.asarray(data.test.x[:n_check], dtype=np.float32)
    if form == "residual":
        row["export"] = export_both(model, out, x)
        onnx_path = Path(row["export"]["torchscript"]["path"])
    else:
        from bnnforge.models.methods.export import export_method_qonnx

        onnx_path = export_method_qonnx(model, out / "model_torchscript.onnx")
    if build_cycles:
        row["build"] = try_build(onnx_path, out / "build", build_cycles, model, data, n_rtl, seed)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def table(rows: list, source: str, epochs: int, seed: int, n_check: int, target_cycles: int) -> str:
    lines = [f"Data: {source}; {epochs} epochs, batch 64, lr 0.01 cosine, seed {seed}, one torch thread. "
             f"Export check: qonnx vs torch on the first {n_check} evaluation images. LUTs and cycles: "
             f"`bnnforge build` estimates, folded for {target_cycles} cycles per frame.", "",
             "| net | form | shape | binary weights | trainable params | test acc | best acc | train s | "
             "QONNX (TorchScript / dynamo): Adds, max abs diff, argmax agree | est. LUT | cycles/frame ideal "
             "(measured) | golden acc (golden == torch) | RTL mismatches / frames |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ex = r.get("export")
        exs = " / ".join(f"{ex[k]['adds']}, {ex[k]['max_abs_diff']:.2g}, {ex[k]['argmax_agreement']:.2%}"
                         for k in ("torchscript", "dynamo")) if ex else "(chain)"
        b = r.get("build", {})
        lut = f"{b['est_lut']:,}" if "est_lut" in b else ("not built" if not b else "compiler: no")
        cyc = f"{b['cycles_ideal']:,}" if "cycles_ideal" in b else "-"
        if "cycles_measured" in b:
            cyc += f" ({b['cycles_measured']:,.1f})"
        gold = f"{b['acc_golden']:.4f} ({b['golden_eq_torch']:.2%})" if "acc_golden" in b else "-"
        rtl = f"{b['rtl_mismatches']} / {b['rtl_frames']}" if "rtl_frames" in b else "-"
        lines.append(f"| {r['net']} | {r['form']} | {r['shape']} | {r['binary_weights']:,} | {r['trainable']:,} | "
                     f"{r['test_acc']:.4f} | {r['best_test_acc']:.4f} | {r['train_seconds']} | {exs} | {lut} | {cyc} | "
                     f"{gold} | {rtl} |")
    errors = [(r["net"], r["build"]["error"]) for r in rows if "error" in r.get("build", {})]
    if errors:
        lines += ["", "Not compiled (the compiler's message):"] + [f"- {n}: `{e}`" for n, e in errors]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", default="sibnn,ftbnn", help="comma-separated: " + ", ".join(PAIRS))
    ap.add_argument("--check", type=int, default=200, help="evaluation images for the torch vs qonnx check")
    ap.add_argument("--export-dir", default=None, help="keep training runs and QONNX exports here")
    ap.add_argument("--no-build", action="store_true", help="skip the `bnnforge build` estimates")
    ap.add_argument("--target-cycles", type=int, default=20736,
                    help="the folding `bnnforge build` chooses for every net (cycles per frame)")
    ap.add_argument("--rtl", type=int, default=0,
                    help="simulate the generated RTL on this many evaluation images (bit-exact vs golden)")
    ap.add_argument("--digits", action="store_true", help="the 8x8 digits even when MNIST is present (a quick run)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = ap.parse_args()
    pairs = a.pairs.split(",")
    bad = [p for p in pairs if p not in PAIRS]
    if bad:
        raise SystemExit(f"unknown pair(s) {', '.join(bad)}; choices: {', '.join(PAIRS)}")
    torch.set_num_threads(1)
    data, source = load_data(a.digits)
    keep = Path(a.export_dir) if a.export_dir else None
    work = keep or Path(tempfile.mkdtemp(prefix="bnnforge-residual-"))
    rows = []
    try:
        for pair in pairs:
            for name, form, kw in PAIRS[pair]:
                print(f"{name} ({form}): training {a.epochs} epochs on {source} ...", flush=True)
                r = run(name, form, kw, data, work / name, a.epochs, a.seed, a.check,
                        None if a.no_build else a.target_cycles, a.rtl)
                rows.append(r)
                print(f"  test acc {r['test_acc']:.4f}; binary weights {r['binary_weights']:,}, trainable "
                      f"{r['trainable']:,}; {r['train_seconds']} s" +
                      (f"; exports {json.dumps(r['export'])}" if "export" in r else "") +
                      (f"; build {json.dumps(r['build'])}" if "build" in r else ""), flush=True)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    md = table(rows, source, a.epochs, a.seed, a.check, a.target_cycles)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "residual_vs_chain" + ("" if pairs == list(PAIRS) else "_" + "_".join(pairs))
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(
        {"data": source, "epochs": a.epochs, "seed": a.seed, "rows": rows}, indent=1, default=str))
    print(md)


if __name__ == "__main__":
    main()
