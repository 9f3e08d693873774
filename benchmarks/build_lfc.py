"""QONNX-to-Verilog build time and peak memory for LFC at the BNN-PYNQ folding,
RTL simulation speed (frames/s, cycles/s) of the generated design, and (--synth)
the Yosys LUT/BRAM count beside BNN-PYNQ's Vivado figures (28,360 LUT, 110 BRAM36).

    .venv/bin/python benchmarks/build_lfc.py [--frames 100] [--no-sim] [--synth] [--flatten]
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

import bnnforge


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--synth", action="store_true", help="also run Yosys synth_xilinx (minutes)")
    ap.add_argument("--flatten", action="store_true", help="flatten before synthesis (as Vivado does)")
    a = ap.parse_args()
    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model, randomize_batchnorm

    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-bench-"))
    m = build_model("lfc", "bipolar")
    randomize_batchnorm(m, torch.Generator().manual_seed(0))
    m.eval()
    export_qonnx(m, tmp / "lfc.onnx", (1, 1, 28, 28))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    bnnforge.build(tmp / "lfc.onnx", tmp / "build", name="lfc", folding=bnnforge.shipped_folding("lfc_bnn_pynq.json"),
                   steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    bt = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"LFC QONNX -> Verilog build: {bt:.2f} s; peak RSS of the process {rss1 / 1024:.0f} MiB "
          f"(before the build {rss0 / 1024:.0f} MiB)")
    if a.synth:
        import json
        from bnnforge.hw.synth import synthesize

        rtl = tmp / "build" / "rtl"
        manifest = json.loads((rtl / "manifest.json").read_text())
        r = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl, flatten=a.flatten)
        print(f"Yosys synth_xilinx ({'flattened' if a.flatten else 'hierarchical'}, {r.elapsed_s:.0f} s): "
              f"{r.total.lut_total:,} LUT = {r.total.lut_total / 28360:.2f}x BNN-PYNQ's 28,360 (Vivado); "
              f"{r.total.bram18} BRAM18 = {r.total.bram18 / 2:.0f} BRAM36 vs 110; {r.total.ff:,} FF; {r.total.dsp} DSP")
    if a.no_sim:
        return
    from bnnforge.sim.golden import execute
    from bnnforge.sim.network import run_network

    hw = onnx.load(str(tmp / "build" / "final_model.onnx"))
    q = np.random.default_rng(0).integers(0, 2, size=(a.frames, 784))
    res = run_network(tmp / "build" / "rtl", q, execute(hw, q))
    print(f"RTL simulation (Verilator + cocotb): build {res['sim_build_seconds']:.1f} s, "
          f"{res['frames']} frames in {res['sim_wall_seconds']:.1f} s = {res['sim_frames_per_second']:.1f} frames/s, "
          f"{res['sim_cycles_per_second']:,.0f} cycles/s; mismatches {res['rtl_mismatches']}; "
          f"cycles/frame {res['cycles_per_frame_measured']:.1f} (ideal {res['cycles_per_frame_ideal']})")


if __name__ == "__main__":
    main()
