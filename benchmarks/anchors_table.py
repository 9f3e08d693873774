"""One table against the anchors (../shared/reference/anchors.md), measured in one run:
build time, cycles per frame measured vs. ideal, Yosys LUT/FF/BRAM vs. BNN-PYNQ /
finn-examples / FINN figures, RTL simulation speed, golden-model speed vs. qonnx's
execute_onnx on the same network, and LFC training throughput vs. plain PyTorch.

    .venv/bin/python benchmarks/anchors_table.py [--synth] [--frames 200] [--out benchmarks/results]

Writes anchors_table.md and anchors_table.json. Without --synth the Yosys columns
are empty (LFC synthesis takes about 2-3 minutes on 2 cores).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

import bnnforge

REPO = Path(__file__).resolve().parents[1]

# Peer figures, from ../shared/reference/anchors.md (their source named per row).
ANCHORS = {
    "tfc": {"folding": "tfc_finn_examples.json", "cycles": 64, "luts": 8219, "bram18": 26,
            "source": "FINN estimate, xc7z020 (finn-examples tfc-w1a1 folding)"},
    "lfc": {"folding": "lfc_bnn_pynq.json", "cycles": 512, "luts": 28360, "bram18": 220,
            "source": "BNN-PYNQ LFC-W1A1, Vivado 2018.2 (110 BRAM36)"},
}


def _simulate(rtl, q, golden):
    try:
        from bnnforge.sim.bulk import run_network_bulk as run
        path = "Verilator C++ harness"
    except ImportError:
        from bnnforge.sim.network import run_network as run
        path = "cocotb"
    res = run(rtl, q, golden)
    res["path"] = path
    return res


def bench_network(topology, frames, synth, tmp):
    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model, randomize_batchnorm
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from bnnforge.sim.golden import execute, quantize_inputs

    a = ANCHORS[topology]
    torch.manual_seed(0)
    m = build_model(topology, "bipolar")
    randomize_batchnorm(m, torch.Generator().manual_seed(0))
    m.eval()
    onnx_path = export_qonnx(m, tmp / f"{topology}.onnx", (1, 1, 28, 28))
    t0 = time.perf_counter()
    bnnforge.build(onnx_path, tmp / topology, name=topology, folding=bnnforge.shipped_folding(a["folding"]),
                   steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    build_s = time.perf_counter() - t0
    bdir = tmp / topology
    hw = onnx.load(str(bdir / "final_model.onnx"))
    streamlined = onnx.load(str(bdir / "intermediate_models" / "01_streamline.onnx"))
    tidy = ModelWrapper(str(bdir / "intermediate_models" / "00_tidy_up.onnx"))

    x = np.random.default_rng(0).random((frames, 1, 28, 28), dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    t0 = time.perf_counter()
    golden = execute(hw, q)
    golden_fps = frames / (time.perf_counter() - t0)
    n_q = min(frames, 20)
    iname, oname = tidy.graph.input[0].name, tidy.graph.output[0].name
    t0 = time.perf_counter()
    ref = np.concatenate([execute_onnx(tidy, {iname: x[i:i + 1]})[oname] for i in range(n_q)])
    qonnx_fps = n_q / (time.perf_counter() - t0)
    assert np.array_equal(ref.argmax(1), golden[:n_q]), "golden and qonnx disagree"

    sim = _simulate(bdir / "rtl", q, golden)
    row = {
        "network": f"{topology.upper()} (bipolar, random init)", "build_s": round(build_s, 2),
        "cycles_ideal": sim["cycles_per_frame_ideal"], "cycles_measured": round(sim["cycles_per_frame_measured"], 1),
        "anchor_cycles": a["cycles"], "rtl_frames": frames, "rtl_mismatches": sim["rtl_mismatches"],
        "sim_path": sim["path"], "sim_frames_per_s": round(sim["sim_frames_per_second"], 1),
        "sim_cycles_per_s": round(sim["sim_cycles_per_second"]),
        "golden_frames_per_s": round(golden_fps), "qonnx_frames_per_s": round(qonnx_fps, 1),
        "golden_vs_qonnx": round(golden_fps / qonnx_fps, 1),
        "anchor_luts": a["luts"], "anchor_bram18": a["bram18"], "anchor_source": a["source"],
        "luts": None, "ffs": None, "bram18": None,
    }
    if synth:
        from bnnforge.hw.synth import synthesize

        rtl = bdir / "rtl"
        manifest = json.loads((rtl / "manifest.json").read_text())
        r = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
        row.update(luts=r.total.lut_total, ffs=r.total.ff, bram18=r.total.bram18,
                   lut_ratio=round(r.total.lut_total / a["luts"], 2))
    return row


def training_row():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the sibling benchmark script, not the package
    from train_throughput import float_lfc, images, throughput
    from bnnforge.models.topologies import build_model

    x, y, src = images(2048)
    torch.manual_seed(0)
    qt = throughput(build_model("lfc", "unipolar"), x, y, 10, 128)
    ft = throughput(float_lfc(), x, y, 10, 128)
    return {"data": src, "quantized_img_s": round(qt), "float_img_s": round(ft), "ratio": round(qt / ft, 2)}


def markdown(rows, train):
    def fmt(v):
        return "n/a" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))

    lines = ["| network | build s | cycles/frame measured (ideal; anchor) | RTL frames, mismatches | "
             "RTL sim frames/s | golden vs qonnx frames/s | Yosys LUT (anchor) | BRAM18 (anchor) | FF |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['build_s']} | {r['cycles_measured']} ({r['cycles_ideal']}; {r['anchor_cycles']}) | "
            f"{r['rtl_frames']}, {r['rtl_mismatches']} | {r['sim_frames_per_s']} ({r['sim_path']}) | "
            f"{r['golden_frames_per_s']:,} vs {r['qonnx_frames_per_s']} ({r['golden_vs_qonnx']}x) | "
            f"{fmt(r['luts'])} ({r['anchor_luts']:,}) | {fmt(r['bram18'])} ({r['anchor_bram18']}) | {fmt(r['ffs'])} |")
    lines.append("")
    lines.append("Anchors: " + "; ".join(f"{r['network'].split()[0]}: {r['anchor_source']}" for r in rows) + ".")
    lines.append(f"Training throughput, LFC on {train['data']}: bnnforge quantizers {train['quantized_img_s']} img/s, "
                 f"plain float PyTorch {train['float_img_s']} img/s, ratio {train['ratio']}.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", action="store_true")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-anchors-"))
    rows = []
    for topology in ("tfc", "lfc"):
        print(f"[anchors] {topology} ...", flush=True)
        rows.append(bench_network(topology, a.frames, a.synth, tmp))
    train = training_row()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, train)
    (out / "anchors_table.md").write_text(table)
    (out / "anchors_table.json").write_text(json.dumps({"rows": rows, "training": train}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
