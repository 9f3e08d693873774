"""The five binarization methods against the bipolar baseline, trained and compiled the
same way, in one table and one plot.

Data: the real MNIST digits in ../shared/datasets/mnist-t10k when present (first 8,000
for training, last 2,000 for evaluation), else scikit-learn's 8x8 digits. Every method
trains the same MLP (input -> 256 -> 256 -> 10) for the same epochs with the same seed,
with its configs/methods/<name>.yaml parameters, is exported, compiled at one folding
(the same PE/SIMD for every method; or, with --target-cycles, each method's cheapest
folding for that throughput by the resource model), and simulated in RTL (Verilator bulk harness) on the first N evaluation images, every
output compared with the golden model. Columns: torch/golden/RTL accuracy, RTL
mismatches, weight sparsity (share of weight entries that need no stored 1: B = 0 in
binary-domain layers, zeros of grouped layers), weight-memory bits the hardware stores
(and, for the block-sparse unit, its schedule ROM and row constants besides),
measured and ideal cycles per frame, estimated and (--synth) Yosys LUTs.

    .venv/bin/python benchmarks/methods.py [--epochs 10] [--rtl 200] [--synth] [--methods bipolar,sibnn,...]

Writes benchmarks/results/methods.md, .json and .png (methods_target<N>.* with --target-cycles N).

With --conv, the conv forms of the methods that are about convolutions (FTBNN's group
execution, the binary domain's sparse kernels) against the bipolar conv baseline: the
net of configs/methods/<method>_cnv.yaml (MNIST: 3x3 convs 16, 32, 32 with 2x2 pools
after the second and third, FC 64, 10), one folding for all (conv0 PE 16 SIMD 1,
conv1 16 x 8, conv2 16 x 16, fc 16 x 16, 10 x 8). Writes methods_cnv.md, .json, .png.

    .venv/bin/python benchmarks/methods.py --conv [--synth]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import bnnforge

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
METHODS = ["bipolar", "sibnn", "binary_domain", "binary_domain_blocks", "sdbnn", "margin", "ftbnn"]
CONV_METHODS = ["bipolar", "ftbnn", "binary_domain", "binary_domain_blocks"]
# conv0 (MW 9, one input channel: SIMD 1), conv1 (144 x 32), conv2 (288 x 32), fc (800 x 64), last (64 x 10);
# SIMD 8 / 16 / 16 are the channels per group (per pixel) of conv1 / conv2 / fc with 2 groups, so grouped
# blocks align
CONV_PLAN = [{"PE": 16, "SIMD": 1}, {"PE": 16, "SIMD": 8}, {"PE": 16, "SIMD": 16}, {"PE": 16, "SIMD": 16},
             {"PE": 10, "SIMD": 8}]
HW = ["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding", "estimates",
      "codegen"]


def folding_for(hw: onnx.ModelProto, mw0: int, override: dict | None = None, conv: bool = False) -> dict:
    """The default: one folding for every method, layer i with the same PE/SIMD whatever
    its op (256 cycles per frame for a dense layer), unless the method overrides a layer."""
    layers = [n for n in hw.graph.node if n.op_type.startswith("MVTU")]
    plan = [dict(f) for f in CONV_PLAN] if conv else \
        [{"PE": 16, "SIMD": 49 if mw0 == 784 else 4}, {"PE": 16, "SIMD": 16}, {"PE": 10, "SIMD": 1}]
    for i, f in (override or {}).items():
        plan[i] = f
    if len(layers) != len(plan):
        raise SystemExit(f"expected {len(plan)} layers, got {[n.name for n in layers]}")
    return {n.name: f for n, f in zip(layers, plan)}


def method_args(name: str, mw0: int, conv: bool = False) -> tuple[str, dict, dict]:
    """(method, parameter overrides, folding overrides by layer index).

    binary_domain_blocks: the binary domain with our block-sparsity regularizer
    (models.methods.binary_domain.BlockSparsityRegularizer) in place of the paper's
    elementwise one, blocks of 16 x 49 inputs in layer 0 (16 x 4 on the 8x8 digits) and
    16 x 16 in layer 1. Its layer 0 then skips about half of its blocks, which leaves room
    to halve that layer's PE at the same 256 cycles per frame: the folding override.
    Conv nets: blocks of the conv folding (CONV_PLAN), no override."""
    if name == "binary_domain_blocks" and conv:
        return ("binary_domain", {"gamma": 0.0, "block_lambda": 0.03,
                                  "blocks": [[f["PE"], f["SIMD"]] for f in CONV_PLAN[:4]]}, {})
    if name == "binary_domain_blocks":
        simd0 = 49 if mw0 == 784 else 4
        return ("binary_domain", {"gamma": 0.0, "block_lambda": 0.03, "blocks": [[16, simd0], [16, 16]]},
                {0: {"PE": 8, "SIMD": simd0}})
    return name, {}, {}


def yosys(build_dir: Path) -> dict:
    from bnnforge.hw.synth import synthesize

    r = build_dir / "rtl"
    man = json.loads((r / "manifest.json").read_text())
    s = synthesize([r / f for f in man["files"]], man["top"], workdir=r)
    return {"lut": s.total.lut_total, "bram18": s.total.bram18, "ff": s.total.ff}


def weight_sparsity(hw: onnx.ModelProto) -> float:
    """Share of weight-matrix entries that need no stored 1: B = 0 entries of sparse01
    layers, zero entries of grouped layers, none for dense layers."""
    from bnnforge.hw.hwgraph import initializer

    zero = total = 0
    for n in hw.graph.node:
        if not n.op_type.startswith("MVTU"):
            continue
        w = initializer(hw, n.input[1])  # sparse01: B; pm1_blocks: W; dense: weight bits
        total += w.size
        if n.op_type == "MVTUSparse":
            zero += int((w == 0).sum())
    return zero / total if total else 0.0


def run_method(name, data, out, epochs, seed, n_rtl, synth, target, conv=False):
    from bnnforge.models.methods import train_method
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs
    import torch

    t0 = time.perf_counter()
    method, params, fold_override = method_args(name, int(np.prod(data.input_shape)), conv)
    res = train_method(method, data, out / "train", epochs, seed, export=True, params=params,
                       config=f"{method}_cnv" if conv else None, progress=True)
    model = res["model"].eval()
    onnx_path = res["onnx"]
    if target:
        bnnforge.build(onnx_path, out / "build", target_cycles=target, steps=HW)
    else:
        bnnforge.build(onnx_path, out / "pre", steps=HW[:3])
        pre = onnx.load(str(out / "pre" / "final_model.onnx"))
        bnnforge.build(onnx_path, out / "build", steps=HW[:3] + HW[4:],
                       folding=folding_for(pre, int(np.prod(data.input_shape)), fold_override, conv))
    b = out / "build"
    streamlined = onnx.load(str(b / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(b / "final_model.onnx"))
    x, y = np.asarray(data.test.x, dtype=np.float32), np.asarray(data.test.y)
    with torch.no_grad():
        t = model(torch.from_numpy(x)).numpy().argmax(1)
    q = quantize_inputs(streamlined, x)
    g = execute(hw, q)
    sim = run_network_bulk(b / "rtl", q[:n_rtl], g[:n_rtl], seed=seed)
    est = json.loads((b / "report" / "estimates.json").read_text())
    label = "".join(f" (layer {i} at PE {f['PE']})" for i, f in fold_override.items()) if not target else ""
    row = {"method": name + label, "acc_torch": float((t == y).mean()), "acc_golden": float((g == y).mean()),
           "golden_eq_torch": float((g == t).mean()),
           "acc_rtl_subset": float((np.array(sim["labels_rtl"]) == y[:n_rtl]).mean()),
           "rtl_frames": sim["frames"], "rtl_mismatches": sim["rtl_mismatches"],
           "weight_sparsity": round(weight_sparsity(hw), 4), "weight_bits": est["weight_bits_total"],
           # what a sparse unit stores besides its weights: schedule ROM and row constants
           "schedule_bits": sum(l.get("schedule_bits", 0) + l.get("row_const_bits", 0) for l in est["layers"]),
           "cycles_measured": sim["cycles_per_frame_measured"], "cycles_ideal": est["cycles_per_frame_ideal"],
           "est_lut": est["est_luts_total"], "seconds": round(time.perf_counter() - t0, 1)}
    if synth:
        row["yosys"] = yosys(b)
    return row


def plot(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r["method"] for r in rows]
    fig = Figure(figsize=(14, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 4)
    ax[0].bar(names, [100 * r["acc_golden"] for r in rows], color="tab:blue")
    lo = min(100 * r["acc_golden"] for r in rows)
    ax[0].set_ylim(max(0, lo - 5), 100)
    ax[0].set_title("test accuracy (golden = hardware), %")
    ax[1].bar(names, [r["weight_bits"] / 1000 for r in rows], color="tab:green")
    ax[1].set_title("weight memory, kbit")
    luts = [r["yosys"]["lut"] if "yosys" in r else r["est_lut"] for r in rows]
    ax[2].bar(names, luts, color="tab:orange")
    ax[2].set_title("LUTs (" + ("Yosys" if all("yosys" in r for r in rows) else "estimate") + ")")
    ax[3].bar(names, [r["cycles_measured"] for r in rows], color="tab:purple")
    ax[3].set_title("cycles per frame (RTL, measured)")
    for a in ax:
        a.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtl", type=int, default=200, help="evaluation images simulated in RTL per method")
    ap.add_argument("--synth", action="store_true", help="Yosys LUTs for every method (about a minute each)")
    ap.add_argument("--methods", default=None, help="comma-separated (default: all of the chosen form)")
    ap.add_argument("--conv", action="store_true",
                    help="the conv forms (configs/methods/<method>_cnv.yaml) of " + ", ".join(CONV_METHODS))
    ap.add_argument("--target-cycles", type=int, default=None,
                    help="fold every method automatically for this many cycles per frame (default: one fixed "
                         "folding for all, 256 cycles for dense layers)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = ap.parse_args()
    from bnnforge.models.data import load_dataset, load_mnist

    if MNIST.is_dir():
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, source = load_mnist(MNIST), "MNIST t10k (8,000 train / 2,000 eval)"
    else:
        data, source = load_dataset("digits"), "8x8 digits (no ../shared MNIST)"
    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-methods-"))
    rows = []
    methods = a.methods.split(",") if a.methods else (CONV_METHODS if a.conv else METHODS)
    known = CONV_METHODS if a.conv else METHODS
    bad = [m for m in methods if m not in known]
    if bad:
        raise SystemExit(f"unknown method(s) {', '.join(bad)} for the {'conv' if a.conv else 'MLP'} form; "
                         f"choices: {', '.join(known)}")
    for name in methods:
        print(f"{name}: training {a.epochs} epochs on {source} ...", flush=True)
        r = run_method(name, data, tmp / name, a.epochs, a.seed, a.rtl, a.synth, a.target_cycles, a.conv)
        rows.append(r)
        print(f"  acc torch {r['acc_torch']:.4f} golden {r['acc_golden']:.4f} (golden == torch "
              f"{r['golden_eq_torch']:.2%}); RTL {r['rtl_frames']} frames, {r['rtl_mismatches']} mismatches; "
              f"weight bits {r['weight_bits']:,}; cycles {r['cycles_measured']:.1f} (ideal {r['cycles_ideal']}); "
              f"LUT est {r['est_lut']:,}" + (f", Yosys {r['yosys']['lut']:,}" if "yosys" in r else ""), flush=True)
    base = rows[0]
    fold = (f"every method folded automatically for {a.target_cycles} cycles/frame" if a.target_cycles else
            "one folding for every method: (PE, SIMD) = " +
            (", ".join(f"({f['PE']}, {f['SIMD']})" for f in CONV_PLAN) if a.conv else "(16, 49 or 4), (16, 16), (10, 1)"))
    net = ("conv net of configs/methods/<method>_cnv.yaml" if a.conv else "MLP input -> 256 -> 256 -> 10")
    lines = [f"Data: {source}; {net}; {a.epochs} epochs, seed {a.seed}; {fold}; RTL on the first {a.rtl} "
             "evaluation images.", "",
             "| method | acc torch | acc golden (= HW) | golden == torch | RTL mismatches | weight sparsity | "
             "weight bits (x base) | + schedule bits = total (x base) | cycles/frame measured (ideal) | est. LUT | "
             "Yosys LUT (x base) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        y = r.get("yosys")
        yb = base.get("yosys")
        lines.append(
            f"| {r['method']} | {r['acc_torch']:.4f} | {r['acc_golden']:.4f} | {r['golden_eq_torch']:.2%} | "
            f"{r['rtl_mismatches']} of {r['rtl_frames']} | {r['weight_sparsity']:.1%} | {r['weight_bits']:,} "
            f"({r['weight_bits'] / base['weight_bits']:.2f}) | {r['schedule_bits']:,} = "
            f"{r['weight_bits'] + r['schedule_bits']:,} ({(r['weight_bits'] + r['schedule_bits']) / base['weight_bits']:.2f}) | "
            f"{r['cycles_measured']:.1f} ({r['cycles_ideal']}) | "
            f"{r['est_lut']:,} | " + (f"{y['lut']:,} ({y['lut'] / yb['lut']:.2f})" if y and yb else "-") + " |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = ("methods_cnv" if a.conv else "methods") + (f"_target{a.target_cycles}" if a.target_cycles else "")
    (out / f"{stem}.json").write_text(json.dumps({"source": source, "epochs": a.epochs, "rows": rows}, indent=2))
    (out / f"{stem}.md").write_text("\n".join(lines) + f"\n\n![methods]({stem}.png)\n")
    plot(rows, out / f"{stem}.png")
    print("\n".join(lines))
    print(f"written: {out / (stem + '.md')}")


if __name__ == "__main__":
    main()
