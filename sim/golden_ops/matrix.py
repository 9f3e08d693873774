"""Dense matrix layers: BinaryMatMul (streamlined: the accumulator) and MVTU (hardware:
with its threshold, multi-threshold or raw output)."""
from __future__ import annotations

import numpy as np

from bnnforge.hw.hwgraph import attr_str, initializer
from bnnforge.sim import golden as g
from bnnforge.sim.golden_ops import golden


@golden("BinaryMatMul")
def binary_matmul(ctx, node, a, inputs):
    w = initializer(ctx.model, node.input[1]).astype(np.int64)
    kind = attr_str(a["input_kind"])
    rows, lead = g._rows(inputs[0], ctx.n, w.shape[1])
    return g._unflatten(g.binary_dot(g._decode_input(rows, kind, int(a.get("input_offset", 0))), w, kind), lead)


@golden("MVTU")
def mvtu(ctx, node, a, inputs):
    wbits = initializer(ctx.model, node.input[1]).astype(np.int64)
    kind = attr_str(a["input_kind"])
    rows, lead = g._rows(inputs[0], ctx.n, a["MW"])
    acc = g.binary_dot(g._decode_input(rows, kind, int(a.get("input_offset", 0))), 2 * wbits - 1, kind)
    if attr_str(a["out_mode"]) == "threshold":
        t = initializer(ctx.model, node.input[2]).astype(np.int64)
        strict = ctx.fault == "mvtu_threshold_strict"
        acc = ((acc > t[None, :]) if strict else (acc >= t[None, :])).astype(np.int64)
    elif attr_str(a["out_mode"]) == "multithreshold":
        acc = g._multithreshold(acc, initializer(ctx.model, node.input[2]).astype(np.int64))
    return g._unflatten(acc, lead)
