"""CNV (BNN-PYNQ's CIFAR-10 network) through bnnforge, one table of measured figures:

- build time QONNX -> Verilog (aim: under 15 s);
- golden argmax vs torch on CIFAR-format inputs, for each activation kind;
- RTL (Verilator, bulk harness) bit-exact vs golden, measured steady-state cycles per
  frame at the BNN-PYNQ folding (anchor 32,768);
- automatic folding at three throughput targets: estimated and measured cycles per
  frame, estimated and (--synth) Yosys LUT/BRAM, beside BNN-PYNQ's 26,072 LUT and 124
  BRAM tiles (Vivado 2018.2).

    .venv/bin/python benchmarks/cnv.py [--frames 40] [--golden 500] [--targets 1000,3000,10000] [--synth]

Random-init networks with random BatchNorm statistics (no CIFAR-10 here): the
hardware claims (bit-exactness, cycles, resources) do not depend on training.
Writes benchmarks/results/cnv.md and .json. Yosys takes about 4 minutes per design
on 2 cores.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

import bnnforge

REPO = Path(__file__).resolve().parents[1]

ANCHOR_LUT, ANCHOR_BRAM36, ANCHOR_CYCLES = 26072, 124, 32768
STEPS = ["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding", "estimates",
         "codegen"]


def cifar_like(n, seed):
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    return np.clip(low + rng.integers(-24, 25, size=low.shape), 0, 255).astype(np.float32) / 255.0


def model(act, seed):
    from bnnforge.models.topologies import build_model, randomize_batchnorm

    torch.manual_seed(seed)
    m = build_model("cnv", act)
    randomize_batchnorm(m, torch.Generator().manual_seed(seed))
    return m.eval()


def run_build(onnx_path, out, **cfg):
    t0 = time.perf_counter()
    bnnforge.build(onnx_path, out, name="cnv", steps=STEPS, **cfg)
    return time.perf_counter() - t0


def rtl(build_dir, x, streamlined):
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs

    hw = onnx.load(str(build_dir / "final_model.onnx"))
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    res = run_network_bulk(build_dir / "rtl", q, golden, seed=1)
    return res


def yosys(build_dir):
    from bnnforge.hw.synth import synthesize

    r = build_dir / "rtl"
    man = json.loads((r / "manifest.json").read_text())
    s = synthesize([r / f for f in man["files"]], man["top"], workdir=r)
    return {"lut": s.total.lut_total, "bram18": s.total.bram18, "ff": s.total.ff, "dsp": s.total.dsp,
            "seconds": round(s.elapsed_s, 1),
            # hw.synth falls back to classic ABC where yowasp's ABC9 crashes
            "lut_mapper": "abc" if any("ABC9 crashed" in w for w in s.warnings) else "abc9"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40, help="RTL frames per design")
    ap.add_argument("--golden", type=int, default=500, help="inputs for golden vs torch")
    ap.add_argument("--targets", default="1000,3000,10000", help="frames/s at 100 MHz for the automatic folding")
    ap.add_argument("--synth", action="store_true", help="Yosys for every design (minutes each)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = ap.parse_args()
    from bnnforge.models.export import export_qonnx
    from bnnforge.sim.golden import execute, quantize_inputs

    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-cnv-"))
    fold = bnnforge.shipped_folding("cnv_bnn_pynq.json")
    results = {"golden_vs_torch": {}, "designs": []}
    for act in ("unipolar", "bipolar"):
        m = model(act, seed=31)
        p = export_qonnx(m, tmp / f"cnv_{act}.onnx", (1, 3, 32, 32))
        bdir = tmp / f"bnn_pynq_{act}"
        bt = run_build(p, bdir, folding=fold)
        streamlined = onnx.load(str(bdir / "intermediate_models" / "01_streamline.onnx"))
        x = cifar_like(a.golden, seed=5)
        with torch.no_grad():
            t = m(torch.from_numpy(x)).numpy().argmax(1)
        g = execute(streamlined, quantize_inputs(streamlined, x))
        agree = float((g == t).mean())
        results["golden_vs_torch"][act] = {"inputs": len(x), "agreement": agree}
        print(f"CNV {act}: golden argmax == torch on {agree:.2%} of {len(x)} CIFAR-format inputs; "
              f"build QONNX -> Verilog {bt:.2f} s", flush=True)
        designs = [("BNN-PYNQ folding", bdir, None)]
        if act == "unipolar":
            for fps in (float(v) for v in a.targets.split(",")):
                d = tmp / f"auto_{int(fps)}"
                run_build(p, d, target_fps=fps)
                designs.append((f"auto {fps:,.0f} fps", d, fps))
        for label, d, fps in designs:
            est = json.loads((d / "report" / "estimates.json").read_text())
            res = rtl(d, cifar_like(a.frames, seed=9), streamlined)
            row = {"network": f"CNV {act}", "folding": label, "target_fps": fps,
                   "build_seconds": round(bt if fps is None else json.loads(
                       (d / "build_summary.json").read_text())["build_seconds"], 2),
                   "cycles_est": est["cycles_per_frame_ideal"], "cycles_measured": res["cycles_per_frame_measured"],
                   "rtl_frames": res["frames"], "rtl_mismatches": res["rtl_mismatches"],
                   "est_lut": est["est_luts_total"], "est_bram18": est["est_bram18_total"]}
            if a.synth:
                row["yosys"] = yosys(d)
            results["designs"].append(row)
            y = row.get("yosys")
            print(f"  {label}: cycles/frame est {row['cycles_est']:,} measured {row['cycles_measured']:,.1f}; "
                  f"RTL {row['rtl_frames']} frames, {row['rtl_mismatches']} mismatches; est {row['est_lut']:,} LUT "
                  f"{row['est_bram18']} BRAM18" + (f"; Yosys {y['lut']:,} LUT ({y['lut'] / ANCHOR_LUT:.2f}x "
                                                  f"BNN-PYNQ's {ANCHOR_LUT:,}), {y['bram18']} BRAM18 = "
                                                  f"{y['bram18'] / 2:.1f} BRAM36 tiles (vs {ANCHOR_BRAM36})"
                                                  if y else ""), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cnv.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = ["| network | folding | build s | cycles/frame est. | measured | RTL frames, mismatches | est. LUT | "
            "Yosys LUT (x BNN-PYNQ 26,072) | est. BRAM18 | Yosys BRAM18 (BRAM36; BNN-PYNQ 124) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["designs"]:
        y = r.get("yosys")
        rows.append(f"| {r['network']} | {r['folding']} | {r['build_seconds']} | {r['cycles_est']:,} | "
                    f"{r['cycles_measured']:,.1f} | {r['rtl_frames']}, {r['rtl_mismatches']} | {r['est_lut']:,} | "
                    + (f"{y['lut']:,} ({y['lut'] / ANCHOR_LUT:.2f}x)" + (" (classic ABC)" if y.get("lut_mapper") == "abc"
                                                                            else "") if y else "-")
                    + f" | {r['est_bram18']} | "
                    + (f"{y['bram18']} ({y['bram18'] / 2:.1f})" if y else "-") + " |")
    gv = "; ".join(f"{k}: {v['agreement']:.2%} of {v['inputs']}" for k, v in results["golden_vs_torch"].items())
    (out / "cnv.md").write_text("\n".join(rows) + f"\n\nGolden argmax == torch: {gv}.\n")
    print("\n".join(rows))
    print(f"written: {out / 'cnv.md'}")


if __name__ == "__main__":
    main()
