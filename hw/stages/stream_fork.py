"""StreamFork -> stream_fork.v: a stream read by N nodes, each beat delivered to all."""
from __future__ import annotations

from bnnforge.hw.stages import BuildContext, StageKind, register
from bnnforge.hw.verilog_names import comment_safe


@register
class StreamForkStage(StageKind):
    op_type = "StreamFork"
    module = "stream_fork"
    files = ("stream_fork.v",)

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        return _fork_stage(node, a)

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), int(a["EB"])


def _fork_stage(node, a) -> dict:
    """StreamFork -> stream_fork: each beat delivered to N readers."""
    width = a["PE"] * a["EB"]
    n = a["N"]
    return dict(kind="fork", module="stream_fork", source=comment_safe(node.name),
                params=dict(WIDTH=width, N=n), in_width=width, out_width=width, in_beats=0, cycles=0,
                ports_out=n, comment=f"fork to {n} readers, {width} bits per beat")
