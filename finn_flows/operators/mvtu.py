"""The dense matrix-vector-threshold unit: BinaryMatMul (+ Threshold | MultiThreshold) ->
MVTU (out_mode threshold | multithreshold with out_bits k <= 4 | accumulator; a wider
k-bit requantizer becomes a Thresholding node behind the accumulator output). MVTU
nodes start unfolded (PE = SIMD = 1); weights become bits (1 = +1) as the hardware
stores them; behind a sliding window the unit runs once per output pixel (`pixels`).
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, signed_bits_for
from bnnforge.hw.memory_style import weight_fold, weights_in_bram
from . import ConvertContext, Operator, register
from ._costs import lane_luts
from .thresholding import thresholding_node, wide_requantizer as _wide_requantizer

MODE_OF_KIND = {"bipolar": "xnor", "unipolar": "and", "int": "addsub"}


@register
class MatrixVectorUnit(Operator):
    streamlined_ops = ("BinaryMatMul",)
    hw_ops = ("MVTU",)
    folding_keys = ("PE", "SIMD")

    def convert(self, ctx: ConvertContext, i: int) -> int:
        node = ctx.nodes[i]
        a = get_attrs(node)
        w = initializer(ctx.model, node.input[1])
        mh, mw = w.shape
        kind = attr_str(a["input_kind"])
        offset = int(a.get("input_offset", 0))
        lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
        d_max = mw * max(abs(lo - offset), abs(hi - offset))
        nxt = ctx.next_node(i)
        fused = (nxt is not None and nxt.op_type in ("Threshold", "MultiThreshold")
                 and nxt.input[0] == node.output[0])
        wide = fused and _wide_requantizer(nxt)
        wname = f"mvtu{ctx.layer}_weights"
        ctx.inits[wname] = numpy_helper.from_array((w > 0).astype(np.uint8), wname)
        ins = [node.input[0], wname]
        attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                     input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]),
                     acc_bits=signed_bits_for(-d_max - 1, d_max + 1), pixels=ctx.pixels,
                     source_node=attr_str(a.get("source_node", node.name)))
        if offset:
            attrs["input_offset"] = offset
        if fused and not wide:
            fuse_thresholds(ctx.model, nxt, ctx.layer, mh, ctx.inits, ins, attrs)
            out = nxt.output[0]
            used = 2
        else:
            attrs.update(out_mode="accumulator", output_kind="int")
            out = node.output[0]
            used = 1
        ctx.out_nodes.append(helper.make_node("MVTU", ins, [out], name=f"MVTU_{ctx.layer}", domain=DOMAIN, **attrs))
        if wide:  # k > MVTU_MAX_OUT_BITS: accumulators into a binary-search requantizer
            ctx.out_nodes.append(thresholding_node(ctx.model, nxt, f"layer{ctx.layer}", mh, ctx.pixels,
                                              attrs["acc_bits"], True, ctx.inits))
            used = 2
        ctx.end_matrix_layer()
        return used

    def estimate(self, name: str, a: dict) -> dict:
        return mvtu_estimate(name, a)


def fuse_thresholds(model, nxt, layer: int, mh: int, inits: dict, ins: list, attrs: dict) -> None:
    """A Threshold or MultiThreshold after a matrix product: its thresholds become the
    unit's third input and set its output mode (1 bit, or k bits from 2^k-1 sorted
    thresholds per output)."""
    t = initializer(model, nxt.input[1]).astype(np.int64)
    tname = f"mvtu{layer}_thresholds"
    inits[tname] = numpy_helper.from_array(t, tname)
    ins.append(tname)
    ta = get_attrs(nxt)
    if nxt.op_type == "MultiThreshold":
        k = int(ta["out_bits"])
        if t.shape != (mh, (1 << k) - 1) or np.any(np.diff(t, axis=1) < 0):
            raise BnnforgeError(f"node {nxt.name!r}: thresholds {t.shape} are not {mh} sorted "
                                f"rows of 2^{k}-1 for a {k}-bit output")
        attrs.update(out_mode="multithreshold", out_bits=k, output_kind="int")
    else:
        attrs.update(out_mode="threshold", output_kind=attr_str(ta["output_kind"]))


def mvtu_estimate(name: str, a: dict) -> dict:
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    pixels = a.get("pixels", 1)
    sf, nf = mw // simd, mh // pe
    mode = attr_str(a["mode"])
    depth, width = nf * sf, pe * simd
    wbits = mw * mh
    if weights_in_bram(a):
        bram18, rom_luts = weight_fold(width, depth)[1], 0
    else:
        bram18, rom_luts = 0, math.ceil(wbits / 32)
    out_mode = attr_str(a["out_mode"])
    # thresholds per output: 1 (threshold), 2^k-1 (multithreshold, k-bit outputs), 0 (accumulator)
    nt = {"threshold": 1, "multithreshold": (1 << int(a.get("out_bits", 1))) - 1}.get(out_mode, 0)
    luts = int(lane_luts(mode, pe, simd, a["input_bits"]) + pe * acc * 2 + rom_luts + 40)
    if out_mode == "multithreshold":
        # each extra threshold: one more ACC_BITS-wide comparator per PE (~1 LUT per bit), an
        # NT-input popcount per PE (~1 LUT per input), its ROM bits at 1 LUT per 32
        luts += int(pe * acc * (nt - 1) + pe * nt + math.ceil(mh * nt * acc / 32))
    return {
        "name": name, "kind": "mvtu", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
        "mode": attr_str(a["mode"]), "acc_bits": acc, "pixels": pixels, "cycles": pixels * sf * nf,
        "weight_bits": wbits, "threshold_bits": mh * acc * nt,
        "out_bits": {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(out_mode, acc),
        "est_luts": luts, "est_bram18": bram18,
    }
