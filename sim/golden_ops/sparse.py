"""Block-sparse layers: SparseMatMul (streamlined) and MVTUSparse (hardware), as the exact
integer product of the layer's matrix (see sim.golden._sparse_layer)."""
from __future__ import annotations

from bnnforge.sim import golden as g
from bnnforge.sim.golden_ops import golden


@golden("SparseMatMul", "MVTUSparse")
def sparse_matmul(ctx, node, a, inputs):
    return g._sparse_layer(ctx.model, node, a, inputs[0], ctx.n)
