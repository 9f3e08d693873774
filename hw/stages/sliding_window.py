"""SlidingWindow -> sliding_window.v: K x K windows (stride, zero padding) over a
channels-last feature map, one MVTU input vector per output pixel."""
from __future__ import annotations

from bnnforge.errors import BnnforgeError
from bnnforge.hw.stages import PIPELINE_SLACK_CYCLES, BuildContext, StageKind, register
from bnnforge.hw.hwgraph import attr_str
from bnnforge.hw.verilog_names import comment_safe


@register
class SlidingWindowStage(StageKind):
    op_type = "SlidingWindow"
    module = "sliding_window"
    files = ("sliding_window.v",)

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        return _window_stage(node, a)

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["SIMD"]), int(a["EB"])

    def lag(self, stage: dict, ideal: int) -> float:
        """The first window needs K - PAD rows of the map; its first beat follows two cycles
        after the last of them is in, well inside the one more row allowed here."""
        p = stage["params"]
        return PIPELINE_SLACK_CYCLES / ideal + (p["K"] - p["PAD"] + 1) / p["IFM_DIM"]


def _window_stage(node, a) -> dict:
    name = comment_safe(node.name)
    c, simd = a["C"], a["SIMD"]
    if c % simd:
        raise BnnforgeError(f"node {name!r}: SIMD = {simd} does not divide the {c} channels")
    return dict(
        kind="window", module="sliding_window", source=comment_safe(attr_str(a.get("source_node", node.name))),
        params=dict(IFM_DIM=a["IFM_DIM"], C=c, K=a["K"], S=a["S"], PAD=a["PAD"], EB=a["EB"], SIMD=simd),
        in_width=simd * a["EB"], out_width=simd * a["EB"],
        in_beats=a["IFM_DIM"] ** 2 * c // simd,
        cycles=max(a["OFM_DIM"] ** 2 * a["K"] ** 2 * c // simd, a["IFM_DIM"] ** 2 * c // simd),
        comment=f"{a['K']}x{a['K']} window, stride {a['S']}, pad {a['PAD']} over {a['IFM_DIM']}x{a['IFM_DIM']}x{c}"
                f" -> {a['OFM_DIM']}x{a['OFM_DIM']} pixels, SIMD {simd}")
