"""step_convert_to_hw: the streamlined graph -> the hardware graph, one operator module
at a time (finn_flows/operators/): BinaryMatMul (+ Threshold | MultiThreshold) -> MVTU,
SparseMatMul -> MVTUSparse, Im2Col -> SlidingWindow, MaxPoolNHWC -> StreamingMaxPool,
StreamAdd (+ its requantizer) -> StreamAdd + Thresholding, LabelSelect stays; then every
stream read by several nodes gets a StreamFork (transforms/insert_stream_forks.py).

Nodes start unfolded (PE = SIMD = 1); step_apply_folding sets the folding and the lanes
of the stream nodes, which follow their neighbours.
"""
from __future__ import annotations

import onnx

from ..operators import ConvertContext, for_streamlined
from ..transforms.insert_stream_forks import insert_stream_forks


def step_convert_to_hw(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    ctx = ConvertContext(model, list(model.graph.node), {t.name: t for t in model.graph.initializer})
    i = 0
    while i < len(ctx.nodes):
        i += for_streamlined(ctx.nodes[i]).convert(ctx, i)
    out_nodes = insert_stream_forks(ctx.out_nodes, {t.name for t in model.graph.output})
    used = {n for node in out_nodes for n in node.input}
    del model.graph.node[:]
    model.graph.node.extend(out_nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(t for name, t in ctx.inits.items() if name in used)
    return model
