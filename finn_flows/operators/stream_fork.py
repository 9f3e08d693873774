"""Stream forks: a stream read by several nodes gets a StreamFork (hw/rtl/stream_fork.v)
right after its producer (finn_flows/transforms/insert_stream_forks.py); it takes the
lanes and element width of the stream it copies."""
from __future__ import annotations

from . import Operator, register


@register
class StreamForkOp(Operator):
    hw_ops = ("StreamFork",)

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        from bnnforge.hw.hwgraph import set_attr
        from bnnforge.hw.stages import stream_out_format
        lanes, eb = stream_out_format(producers[node.input[0]])
        set_attr(node, "PE", lanes)
        set_attr(node, "EB", eb)
