"""The k-bit weight unit: KbitMatMul (+ Threshold | MultiThreshold) -> MVTUKbit
(hw/rtl/mvtu_kbit.v, finn_flows/kbit.py), numbered and folded like MVTU.

Resource estimate (lane products), in the form of the mvtu model (operators/mvtu.py): lanes and their adder trees, per-PE accumulator and compare,
weight memory (BRAM18 when deep and large, else LUT ROM at one LUT per 32 bits), the
multi-threshold output's comparators.

A lane multiplies a B-bit weight by an (IB+1)-bit value and feeds a tree whose
operands are B+IB+1 bits wide, so its cost grows with both widths and with log2(SIMD).
LANE_FIT is the least-squares fit to Yosys synth_xilinx of nine lone mvtu_kbit instances
(`benchmarks/kbit_unit.py`, 2026-12: PE x SIMD 4 x 16, 8 x 8, 2 x 64, 16 x 4; bipolar,
2-bit offset and 4-bit inputs; 2-, 3- and 4-bit weights; 693..2,636 LUT), after the
accumulator/compare, ROM and multi-threshold terms above; the estimated totals are within
-5.1 %..+1.1 % of Yosys except the smallest (16 x 4 bipolar: 755 against 693 LUT, +8.9 %).
"""
from __future__ import annotations

import math

from bnnforge.hw.hwgraph import attr_str

from . import ConvertContext, Operator, register
from bnnforge.hw.memfiles_kbit import kbit_weights_in_bram
from bnnforge.hw.memory_style import bram18_for

# LUTs per lane = C0 + C1 * B * (IB+1) + C2 * (B + IB + 1) * log2(SIMD)
LANE_FIT = (-1.92, 1.29, 0.367)


def kbit_lane_luts(pe: int, simd: int, wbits: int, ib: int) -> float:
    c0, c1, c2 = LANE_FIT
    return pe * simd * (c0 + c1 * wbits * (ib + 1) + c2 * (wbits + ib + 1) * math.log2(simd))


def mvtu_kbit_estimate(name: str, a: dict) -> dict:
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    wb = int(a["weight_bits"])
    pixels = a.get("pixels", 1)
    sf, nf = mw // simd, mh // pe
    mode = attr_str(a["mode"])
    ib = int(a["input_bits"]) if mode == "addsub" else 1
    wbits = mw * mh * wb
    if kbit_weights_in_bram(a):
        bram18, rom_luts = bram18_for(pe * simd * wb, nf * sf), 0
    else:
        bram18, rom_luts = 0, math.ceil(wbits / 32)
    out_mode = attr_str(a["out_mode"])
    nt = {"threshold": 1, "multithreshold": (1 << int(a.get("out_bits", 1))) - 1}.get(out_mode, 0)
    luts = int(kbit_lane_luts(pe, simd, wb, ib) + pe * acc * 2 + rom_luts + 40)
    if out_mode == "multithreshold":
        luts += int(pe * acc * (nt - 1) + pe * nt + math.ceil(mh * nt * acc / 32))
    return {
        "name": name, "kind": "mvtu_kbit", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
        "mode": f"{mode} w{wb}", "acc_bits": acc, "pixels": pixels, "cycles": pixels * sf * nf,
        "weight_bits": wbits, "threshold_bits": mh * acc * nt,
        "out_bits": {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(out_mode, acc),
        "est_luts": luts, "est_bram18": bram18,
    }


@register
class KbitMatrixUnit(Operator):
    streamlined_ops = ("KbitMatMul",)
    hw_ops = ("MVTUKbit",)
    folding_keys = ("PE", "SIMD")

    def convert(self, ctx: ConvertContext, i: int) -> int:
        from ..kbit import kbit_to_hw
        used = kbit_to_hw(ctx.model, ctx.nodes, i, ctx.layer, ctx.out_nodes, ctx.inits, ctx.pixels)
        ctx.end_matrix_layer()
        return used

    def estimate(self, name: str, a: dict) -> dict:
        return mvtu_kbit_estimate(name, a)
