"""Requantizers: Threshold (y = acc >= T), MultiThreshold (y = #{t : acc >= T[o, t]}),
both with optional output flips, and the hardware Thresholding unit (the same count on
any integer stream, C channels last)."""
from __future__ import annotations

import numpy as np

from bnnforge.hw.hwgraph import initializer
from bnnforge.sim import golden as g
from bnnforge.sim.golden_ops import golden


@golden("Threshold")
def threshold(ctx, node, a, inputs):
    t = initializer(ctx.model, node.input[1]).astype(np.int64)
    return g._out_flip(ctx.model, node, 2, (inputs[0] >= t).astype(np.int64), 1)


@golden("MultiThreshold")
def multithreshold(ctx, node, a, inputs):
    t = initializer(ctx.model, node.input[1]).astype(np.int64)   # [MH, 2^k-1]
    return g._out_flip(ctx.model, node, 2, g._multithreshold(inputs[0], t), t.shape[1])


@golden("Thresholding")
def thresholding(ctx, node, a, inputs):
    xin = inputs[0]
    c = int(a["C"])
    t = initializer(ctx.model, node.input[1]).astype(np.int64).reshape(c, -1)
    y = g._multithreshold(xin.reshape(-1, c), t)
    return g._out_flip(ctx.model, node, 2, y, t.shape[1]).reshape(xin.shape)
