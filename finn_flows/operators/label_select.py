"""LabelSelect: the index of the largest accumulator of the last layer; it stays as it is
in the hardware graph and codegen instantiates label_select.v behind the classifier."""
from __future__ import annotations

from . import ConvertContext, Operator, register


@register
class LabelSelectOp(Operator):
    streamlined_ops = ("LabelSelect",)
    hw_ops = ("LabelSelect",)

    def convert(self, ctx: ConvertContext, i: int) -> int:
        ctx.out_nodes.append(ctx.nodes[i])
        return 1
