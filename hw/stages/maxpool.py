"""StreamingMaxPool -> maxpool_bin.v: non-overlapping P x P max pool over 1-bit (OR) or
k-bit (unsigned max) channels-last maps."""
from __future__ import annotations

from bnnforge.errors import BnnforgeError
from bnnforge.hw.stages import PIPELINE_SLACK_CYCLES, BuildContext, StageKind, register
from bnnforge.hw.verilog_names import comment_safe


@register
class MaxPoolStage(StageKind):
    op_type = "StreamingMaxPool"
    module = "maxpool_bin"
    files = ("maxpool_bin.v",)

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        return _pool_stage(node, a)

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["SIMD"]), int(a["EB"])

    def lag(self, stage: dict, ideal: int) -> float:
        p = stage["params"]
        return PIPELINE_SLACK_CYCLES / ideal + p["P"] / p["IFM_DIM"]


def _pool_stage(node, a) -> dict:
    name = comment_safe(node.name)
    c, simd, p, dim = a["C"], a["SIMD"], a["P"], a["IFM_DIM"]
    if c % simd or dim % p:
        raise BnnforgeError(f"node {name!r}: SIMD {simd} must divide C {c} and P {p} must divide IFM_DIM {dim}")
    return dict(
        kind="pool", module="maxpool_bin", source=name,
        params=dict(IFM_DIM=dim, C=c, P=p, SIMD=simd, EB=a["EB"]),
        in_width=simd * a["EB"], out_width=simd * a["EB"], in_beats=dim * dim * c // simd,
        cycles=dim * dim * c // simd,
        comment=f"max pool {p}x{p} over {dim}x{dim}x{c}, SIMD {simd}")


# bit-vector parameters written as sized hex literals: parameter -> the parameter giving its width
