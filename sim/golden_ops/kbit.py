"""k-bit weight layers: KbitMatMul (streamlined: the accumulator) and MVTUKbit (hardware:
with its output stage), the exact integer product of the signed k-bit weights with the
decoded inputs (levels minus input_offset after a signed k-bit activation)."""
from __future__ import annotations

import numpy as np

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import attr_str, initializer
from bnnforge.sim import golden as g
from bnnforge.sim.golden_ops import golden


@golden("KbitMatMul", "MVTUKbit")
def kbit_matmul(ctx, node, a, inputs):
    w = initializer(ctx.model, node.input[1]).astype(np.int64)
    wb = int(a.get("weight_bits", 0))
    if not 2 <= wb <= 8 or w.ndim != 2 or (w.size and (w.min() < -(1 << (wb - 1)) or w.max() >= (1 << (wb - 1)))):
        raise BnnforgeError(f"node {node.name!r}: weights do not fit weight_bits = {wb} signed bits")
    kind = attr_str(a["input_kind"])
    rows, lead = g._rows(inputs[0], ctx.n, w.shape[1])
    acc = g._decode_input(rows, kind, int(a.get("input_offset", 0))) @ w.T
    if node.op_type == "MVTUKbit":
        mode = attr_str(a["out_mode"])
        if mode == "threshold":
            acc = (acc >= initializer(ctx.model, node.input[2]).astype(np.int64)[None, :]).astype(np.int64)
        elif mode == "multithreshold":
            acc = g._multithreshold(acc, initializer(ctx.model, node.input[2]).astype(np.int64))
    return g._unflatten(acc, lead)
