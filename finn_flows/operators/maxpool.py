"""Max pools: MaxPoolNHWC -> StreamingMaxPool (hw/rtl/maxpool_bin.v), an OR of bits
(1-bit maps) or an unsigned max of levels; it takes the lanes of the stream it reads."""
from __future__ import annotations

import math

from onnx import helper

from bnnforge.hw.hwgraph import DOMAIN, get_attrs
from . import ConvertContext, Operator, register


@register
class MaxPoolOp(Operator):
    streamlined_ops = ("MaxPoolNHWC",)
    hw_ops = ("StreamingMaxPool",)

    def convert(self, ctx: ConvertContext, i: int) -> int:
        node = ctx.nodes[i]
        a = get_attrs(node)
        taken = {n.name for n in ctx.out_nodes}
        name = f"StreamingMaxPool_{ctx.layer - 1}"
        k = 1
        while name in taken:
            name, k = f"StreamingMaxPool_{ctx.layer - 1}_{k}", k + 1
        ctx.out_nodes.append(helper.make_node(
            "StreamingMaxPool", list(node.input), list(node.output), name=name,
            domain=DOMAIN, IFM_DIM=a["ifm_dim"], C=a["channels"], P=a["kernel"], EB=a["element_bits"], SIMD=1))
        return 1

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        from bnnforge.hw.hwgraph import set_attr
        from bnnforge.hw.stages import stream_out_format
        set_attr(node, "SIMD", stream_out_format(producers[node.input[0]])[0])

    def estimate(self, name: str, a: dict) -> dict:
        return pool_estimate(name, a)


def pool_estimate(name: str, a: dict) -> dict:
    c, dim, p, simd, eb = a["C"], a["IFM_DIM"], a["P"], a["SIMD"], a["EB"]
    bits = (dim // p) * c * eb
    return {"name": name, "kind": "pool", "MW": c, "MH": c, "PE": 0, "SIMD": simd,
            "mode": f"max {p}x{p}", "acc_bits": 0, "pixels": (dim // p) ** 2,
            "cycles": dim * dim * c // simd, "weight_bits": 0, "threshold_bits": 0, "buffer_bits": bits,
            "est_luts": int(30 + 2 * simd * eb + math.ceil(bits / 64)), "est_bram18": 0}
