"""Bulk RTL simulation (sim/bulk.py, compiled C++ harness) against the cocotb path
(sim/network.py) on LFC at the BNN-PYNQ folding (512 cycles/frame).

LFC is trained for one epoch on the real MNIST split when ../shared/datasets/mnist-t10k
exists beside the repository (random init and random images otherwise); then
--frames images (default: the 2,000 test digits) go through the bulk path,
bit-exact against the golden model, and the first --cocotb-frames through cocotb.

    .venv/bin/python benchmarks/bulk_lfc_mnist.py [--frames 2000] [--cocotb-frames 100] [--act bipolar]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import bnnforge

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--cocotb-frames", type=int, default=100)
    ap.add_argument("--act", default="bipolar", choices=["bipolar", "unipolar"])
    a = ap.parse_args()
    import onnx
    import torch

    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model, randomize_batchnorm
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs
    from bnnforge.sim.network import run_network

    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-bulk-"))
    model = build_model("lfc", a.act)
    labels = None
    if MNIST.is_dir():
        from bnnforge.models.data import load_mnist
        from bnnforge.models.train import train

        data = load_mnist(MNIST)
        t0 = time.perf_counter()
        tr = train(model, data, tmp / "train", epochs=1, batch_size=128, lr=0.005, seed=0,
                   meta=model.meta(), progress=False, num_threads=1)
        print(f"LFC/{a.act} trained 1 epoch on real MNIST ({len(data.train)} images) in "
              f"{time.perf_counter() - t0:.0f} s: torch test acc {tr['test_acc']:.4f}")
        x, labels = data.test.x, data.test.y
        if a.frames > len(x):  # more than the test split: the training digits follow
            x, labels = np.concatenate([x, data.train.x]), np.concatenate([labels, data.train.y])
        x, labels = x[:a.frames], labels[:a.frames]
    else:
        print(f"no MNIST at {MNIST}: random-init LFC/{a.act}, random images")
        randomize_batchnorm(model, torch.Generator().manual_seed(0))
        x = np.random.default_rng(0).random((a.frames, 1, 28, 28), dtype=np.float32)
    model.eval()
    export_qonnx(model, tmp / "lfc.onnx", (1, 1, 28, 28))
    bnnforge.build(tmp / "lfc.onnx", tmp / "build", name="lfc", folding=bnnforge.shipped_folding("lfc_bnn_pynq.json"),
                   steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    streamlined = onnx.load(str(tmp / "build" / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(tmp / "build" / "final_model.onnx"))
    rtl = tmp / "build" / "rtl"
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)

    b = run_network_bulk(rtl, q, golden)
    print(f"bulk   (C++ harness): build {b['sim_build_seconds']:.1f} s, {b['frames']} frames in "
          f"{b['sim_wall_seconds']:.2f} s = {b['sim_frames_per_second']:,.1f} frames/s, "
          f"{b['sim_cycles_per_second']:,.0f} cycles/s; mismatches {b['rtl_mismatches']}; tlast ok {b['tlast_correct']}; "
          f"cycles/frame {b['cycles_per_frame_measured']:.1f} (ideal {b['cycles_per_frame_ideal']})")
    n = min(a.cocotb_frames, len(q))
    c = run_network(rtl, q[:n], golden[:n])
    print(f"cocotb (per-cycle Python): build {c['sim_build_seconds']:.1f} s, {c['frames']} frames in "
          f"{c['sim_wall_seconds']:.2f} s = {c['sim_frames_per_second']:,.1f} frames/s, "
          f"{c['sim_cycles_per_second']:,.0f} cycles/s; mismatches {c['rtl_mismatches']}; "
          f"cycles/frame {c['cycles_per_frame_measured']:.1f} (ideal {c['cycles_per_frame_ideal']})")
    same = c["outputs"] == b["outputs"][:n]
    print(f"bulk/cocotb frames/s ratio: {b['sim_frames_per_second'] / c['sim_frames_per_second']:,.0f}x; "
          f"first {n} outputs identical on both paths: {same}")
    if labels is not None:
        print(f"RTL accuracy on {len(labels)} real digits: {np.mean(np.array(b['labels_rtl']) == labels):.4f}")
    ok = b["rtl_mismatches"] == 0 and c["rtl_mismatches"] == 0 and same and b["tlast_correct"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
