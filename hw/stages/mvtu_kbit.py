"""MVTUKbit -> mvtu_kbit.v: the k-bit (2..4-bit signed) weight matrix-vector unit; weight
and threshold images and parameters from hw.memfiles_kbit."""
from __future__ import annotations

from bnnforge.hw.stages import BuildContext, StageKind, register
from bnnforge.hw.stages.mvtu import matrix_lag, out_bits
from bnnforge.hw.verilog_names import comment_safe


@register
class MVTUKbitStage(StageKind):
    op_type = "MVTUKbit"
    module = "mvtu_kbit"
    files = ("popcount.v", "adder_tree.v", "pipe_delay.v", "mvtu_kbit.v")
    layer = True

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        from bnnforge.hw.memfiles_kbit import kbit_stage
        q, stage = kbit_stage(ctx.model, node, a, ctx.out_dir, ctx.layer_index, comment_safe(node.name),
                              ctx.clk_period_ns)
        return stage

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), out_bits(a)

    def lag(self, stage: dict, ideal: int) -> float:
        return matrix_lag(stage, ideal)
