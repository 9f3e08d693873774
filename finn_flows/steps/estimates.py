"""step_estimates: cycles, throughput, memory and resources per layer (JSON + table).

Resource model (xc7, first order, calibrated on Yosys synth_xilinx of our RTL):
XNOR/AND lanes and the popcount tree cost about 1 LUT per synapse lane; each PE's
accumulator and threshold compare cost about 2 LUT per accumulator bit; weight
memory goes to BRAM18 (18 Kbit, 36 bits wide at depth 512) when a PE's slice is
large, LUTRAM (64 bits per LUT) when small.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import onnx

from ..hwgraph import attr_str, get_attrs


def layer_estimates(model: onnx.ModelProto, fclk_mhz: float) -> dict:
    layers = []
    for node in model.graph.node:
        if node.op_type != "MVTU":
            continue
        a = get_attrs(node)
        mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
        sf, nf = mw // simd, mh // pe
        lanes = pe * simd * (a["input_bits"] if attr_str(a["mode"]) == "addsub" else 1)
        depth, width = nf * sf, pe * simd
        wbits = mw * mh
        if depth >= 128 and wbits >= 16384:
            bram18 = math.ceil(width / 36) * math.ceil(depth / 512) if depth <= 512 \
                else math.ceil(width / 18) * math.ceil(depth / 1024)
            lutram = 0
        else:
            bram18, lutram = 0, math.ceil(wbits / 64)
        t_out = attr_str(a["out_mode"]) == "threshold"
        luts = int(lanes * 1.1 + pe * acc * (3 if t_out else 2) + lutram + 40)
        layers.append({
            "name": node.name, "MW": mw, "MH": mh, "PE": pe, "SIMD": simd, "mode": attr_str(a["mode"]),
            "acc_bits": acc, "cycles": sf * nf, "weight_bits": wbits,
            "threshold_bits": mh * acc if t_out else 0, "est_luts": luts, "est_bram18": bram18,
        })
    ideal = max(l["cycles"] for l in layers)
    return {
        "layers": layers,
        "cycles_per_frame_ideal": ideal,
        "bottleneck": [l["name"] for l in layers if l["cycles"] == ideal],
        "fclk_mhz": fclk_mhz,
        "fps_ideal": fclk_mhz * 1e6 / ideal,
        "weight_bits_total": sum(l["weight_bits"] for l in layers),
        "est_luts_total": sum(l["est_luts"] for l in layers),
        "est_bram18_total": sum(l["est_bram18"] for l in layers),
    }


def format_table(est: dict) -> str:
    rows = ["| layer | MW x MH | SIMD | PE | mode | cycles | weight bits | est. LUT | est. BRAM18 |",
            "|---|---|---|---|---|---|---|---|---|"]
    for l in est["layers"]:
        rows.append(f"| {l['name']} | {l['MW']} x {l['MH']} | {l['SIMD']} | {l['PE']} | {l['mode']} | "
                    f"{l['cycles']:,} | {l['weight_bits']:,} | {l['est_luts']:,} | {l['est_bram18']} |")
    rows.append(f"\nIdeal cycles per frame: {est['cycles_per_frame_ideal']:,} "
                f"(bottleneck {', '.join(est['bottleneck'])}); at {est['fclk_mhz']:.0f} MHz: "
                f"{est['fps_ideal']:,.0f} frames/s. Estimated {est['est_luts_total']:,} LUT, "
                f"{est['est_bram18_total']} BRAM18.")
    return "\n".join(rows) + "\n"


def step_estimates(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    est = layer_estimates(model, cfg.fclk_mhz)
    out = Path(cfg.build_dir) / "report"
    out.mkdir(exist_ok=True)
    (out / "estimates.json").write_text(json.dumps(est, indent=2))
    (out / "estimates.md").write_text(format_table(est))
    return model
