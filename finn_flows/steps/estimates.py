"""step_estimates: cycles, throughput, memory and resources per layer (JSON + table).

Resource model (xc7, first order), fitted to Yosys synth_xilinx of our RTL for LFC
at the BNN-PYNQ folding (hierarchical synthesis, 2026-11): a synapse lane (XNOR/AND,
its share of the popcount tree and of the pipeline registers) costs about 2.6 LUT;
each PE's accumulator and threshold compare about 2 LUT per accumulator bit. Weight
memory goes to BRAM18 (36 bits wide at depth 512, 18 at 1024) when it is deep and
large, which matched Yosys' BRAM count exactly; otherwise it becomes LUT ROM,
costed at one LUT per 32 bits.
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
            rom_luts = 0
        else:
            bram18, rom_luts = 0, math.ceil(wbits / 32)
        t_out = attr_str(a["out_mode"]) == "threshold"
        luts = int(lanes * 2.6 + pe * acc * 2 + rom_luts + 40)
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
