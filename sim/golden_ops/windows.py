"""Sliding windows (Im2Col / SlidingWindow) and max pools (MaxPoolNHWC /
StreamingMaxPool) on channels-last maps."""
from __future__ import annotations

from bnnforge.sim import golden as g
from bnnforge.sim.golden_ops import golden


@golden("Im2Col")
def im2col(ctx, node, a, inputs):
    xs = g._spatial(inputs[0], ctx.n, a["ifm_dim"], a["channels"])
    return g.im2col_nhwc(xs, a["kernel"], a["stride"], a["pad"])


@golden("SlidingWindow")
def sliding_window(ctx, node, a, inputs):
    xs = g._spatial(inputs[0], ctx.n, a["IFM_DIM"], a["C"])
    return g.im2col_nhwc(xs, a["K"], a["S"], a["PAD"])


@golden("MaxPoolNHWC")
def maxpool(ctx, node, a, inputs):
    xs = g._spatial(inputs[0], ctx.n, a["ifm_dim"], a["channels"])
    return g.maxpool_nhwc(xs, a["kernel"])  # on bits: OR, for both 1-bit kinds


@golden("StreamingMaxPool")
def streaming_maxpool(ctx, node, a, inputs):
    xs = g._spatial(inputs[0], ctx.n, a["IFM_DIM"], a["C"])
    return g.maxpool_nhwc(xs, a["P"])
