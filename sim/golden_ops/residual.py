"""The residual join: StreamAdd adds the two streams' raw integers (levels or bits, as
both come from one quantizer), and StreamFork hands one stream to several readers."""
from __future__ import annotations

from bnnforge.sim.golden_ops import golden


@golden("StreamAdd")
def stream_add(ctx, node, a, inputs):
    x0, x1 = inputs
    return (x0.reshape(ctx.n, -1) + x1.reshape(ctx.n, -1)).reshape(x0.shape)


@golden("StreamFork")
def stream_fork(ctx, node, a, inputs):
    return [inputs[0]] * len(node.output)
