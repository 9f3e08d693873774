"""StreamAdd -> stream_add.v: the residual join, lane-wise sum of two streams quantized
alike (their levels or bits), one bit wider."""
from __future__ import annotations

from bnnforge.errors import BnnforgeError
from bnnforge.hw.stages import BuildContext, StageKind, register
from bnnforge.hw.hwgraph import attr_str
from bnnforge.hw.verilog_names import comment_safe


@register
class StreamAddStage(StageKind):
    op_type = "StreamAdd"
    module = "stream_add"
    files = ("stream_add.v",)
    ports_in = 2

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        return _add_stage(node, a)

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), int(a["EB"]) + 1


def _add_stage(node, a) -> dict:
    """StreamAdd -> stream_add: lane-wise sum of two unsigned streams, one bit wider."""
    name = comment_safe(node.name)
    c, pe, eb, pixels = a["C"], a["PE"], a["EB"], a["pixels"]
    if c % pe:
        raise BnnforgeError(f"node {name!r}: {pe} lanes do not divide its {c} channels")
    beats = pixels * c // pe
    return dict(kind="add", module="stream_add", source=comment_safe(attr_str(a.get("source_node", node.name))),
                params=dict(LANES=pe, IN_BITS=eb, SIGNED=0, OUT_BITS=eb + 1),
                in_width=pe * eb, out_width=pe * (eb + 1), in_beats=beats, cycles=beats, ports_in=2,
                comment=f"residual add of two {eb}-bit streams, {c} channels x {pixels} pixels, {pe} lanes")
