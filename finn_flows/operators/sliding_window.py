"""Convolution windows: Im2Col -> SlidingWindow (hw/rtl/sliding_window.v). A window has
no folding key: it takes the SIMD of the MVTU it feeds (one window beat = one MVTU input
beat, no width converter)."""
from __future__ import annotations

import math

from onnx import helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs
from bnnforge.hw.memory_style import bram18_for
from . import ConvertContext, Operator, register


@register
class SlidingWindowOp(Operator):
    streamlined_ops = ("Im2Col",)
    hw_ops = ("SlidingWindow",)

    def convert(self, ctx: ConvertContext, i: int) -> int:
        node = ctx.nodes[i]
        a = get_attrs(node)
        nxt = ctx.next_node(i)
        if nxt is None or nxt.op_type not in ("BinaryMatMul", "SparseMatMul"):
            raise BnnforgeError(f"node {node.name!r}: Im2Col must feed a BinaryMatMul or SparseMatMul")
        m = get_attrs(nxt)
        kind = attr_str(m["input_kind"])
        eb = int(m["input_bits"]) if kind == "int" else 1
        ctx.out_nodes.append(helper.make_node(
            "SlidingWindow", list(node.input), list(node.output), name=f"SlidingWindow_{ctx.layer}",
            domain=DOMAIN, IFM_DIM=a["ifm_dim"], C=a["channels"], K=a["kernel"], S=a["stride"], PAD=a["pad"],
            OFM_DIM=a["ofm_dim"], EB=eb, SIMD=1, input_kind=kind,
            source_node=attr_str(a.get("source_node", node.name))))
        ctx.pixels = a["ofm_dim"] ** 2
        return 1

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        from bnnforge.hw.hwgraph import set_attr
        mv = readers[node.output[0]][0]
        simd = get_attrs(mv)["SIMD"]
        c = get_attrs(node)["C"]
        if c % simd:
            raise BnnforgeError(
                f"{src}: {mv.name}.SIMD = {simd} must divide the {c} input channels of its convolution "
                f"(the sliding window streams whole channel groups); try a divisor of {c}")
        set_attr(node, "SIMD", simd)

    def estimate(self, name: str, a: dict) -> dict:
        return window_estimate(name, a)


def window_estimate(name: str, a: dict) -> dict:
    """Sliding window: K+1 rows of the input map in a SIMD*EB-wide buffer (BRAM when
    large, else distributed RAM at 64 bits per LUT), plus address/mux logic."""
    c, dim, k, simd, eb = a["C"], a["IFM_DIM"], a["K"], a["SIMD"], a["EB"]
    width = simd * eb
    depth = (k + 1) * (dim + 2 * a["PAD"]) * (c // simd)
    bits = width * depth
    bram18 = bram18_for(width, depth) if bits >= 16384 else 0
    luts = int(80 + 3 * width + (0 if bram18 else math.ceil(bits / 64)))
    out_beats = a["OFM_DIM"] ** 2 * k * k * c // simd
    in_beats = dim * dim * c // simd
    return {"name": name, "kind": "window", "MW": k * k * c, "MH": c, "PE": 0, "SIMD": simd,
            "mode": f"{k}x{k}/s{a['S']}" + (f" pad {a['PAD']}" if a["PAD"] else ""), "acc_bits": 0,
            "pixels": a["OFM_DIM"] ** 2, "cycles": max(out_beats, in_beats), "weight_bits": 0,
            "threshold_bits": 0, "buffer_bits": bits, "est_luts": luts, "est_bram18": bram18}
