"""The standalone requantizer: Threshold | MultiThreshold on an integer stream ->
Thresholding (hw/rtl/thresholding.v, a pipelined binary search over sorted thresholds,
k up to 8, per-channel output flips). Built after a residual add (residual_add.py) and
behind a matrix unit's accumulator output when its activation is wider than the unit's
fused multi-threshold (MVTU_MAX_OUT_BITS); it takes the lanes of the stream it reads."""
from __future__ import annotations

import math

import numpy as np
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer
from . import Operator, register

# the mvtu's fused multi-threshold output compares with 2^k-1 thresholds in parallel; wider
# requantizers (k up to 8) get the binary-search unit behind an accumulator output
MVTU_MAX_OUT_BITS = 4


@register
class ThresholdingOp(Operator):
    hw_ops = ("Thresholding",)

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        from bnnforge.hw.hwgraph import set_attr
        from bnnforge.hw.stages import stream_out_format
        set_attr(node, "PE", stream_out_format(producers[node.input[0]])[0])

    def estimate(self, name: str, a: dict) -> dict:
        return thresholding_estimate(name, a)


def wide_requantizer(node) -> bool:
    return node.op_type == "MultiThreshold" and int(get_attrs(node)["out_bits"]) > MVTU_MAX_OUT_BITS


def thresholding_node(model, nxt, tag, c: int, pixels: int, in_bits: int, signed: bool, inits: dict,
                       source: str | None = None):
    """A Threshold | MultiThreshold (with its optional output flips) on an integer stream ->
    Thresholding_<tag> (hw/rtl/thresholding.v), one lane until apply_folding."""
    t = initializer(model, nxt.input[1]).astype(np.int64).reshape(c, -1)
    ta = get_attrs(nxt)
    k = int(ta["out_bits"]) if nxt.op_type == "MultiThreshold" else 1
    if t.shape[1] != (1 << k) - 1 or np.any(np.diff(t, axis=1) < 0):
        raise BnnforgeError(f"node {nxt.name!r}: thresholds {t.shape} are not {c} sorted rows of 2^{k}-1")
    tname = f"thresholding{tag}_thresholds"
    inits[tname] = numpy_helper.from_array(t, tname)
    ins = [nxt.input[0], tname]
    if len(nxt.input) > 2 and nxt.input[2]:
        fname = f"thresholding{tag}_out_flip"
        inits[fname] = numpy_helper.from_array(initializer(model, nxt.input[2]).astype(np.uint8), fname)
        ins.append(fname)
    return helper.make_node(
        "Thresholding", ins, list(nxt.output), name=f"Thresholding_{tag}", domain=DOMAIN,
        C=c, pixels=pixels, IN_BITS=int(in_bits), SIGNED=int(signed), OUT_BITS=k, PE=1,
        output_kind=attr_str(ta.get("output_kind", "int")), source_node=source or nxt.name)


def thresholding_estimate(name: str, a: dict) -> dict:
    """Standalone requantizer (thresholding): per lane OUT_BITS search stages, each a
    comparator (~1 LUT per bit) and its slice of the thresholds as LUT ROM (1 LUT per
    32 bits), plus the stage registers."""
    c, pe, k, ib = a["C"], a["PE"], a["OUT_BITS"], a["IN_BITS"]
    nt = (1 << k) - 1
    t_bits = max(ib + 1, 2)
    tbits = c * nt * t_bits
    luts = int(20 + pe * k * (t_bits + 1) + math.ceil(tbits / 32))
    return {"name": name, "kind": "thresholding", "MW": c, "MH": c, "PE": pe, "SIMD": 0,
            "mode": f"{k}-bit requantize", "acc_bits": ib, "pixels": a["pixels"],
            "cycles": a["pixels"] * c // pe, "weight_bits": 0, "threshold_bits": tbits,
            "est_luts": luts, "est_bram18": 0}
