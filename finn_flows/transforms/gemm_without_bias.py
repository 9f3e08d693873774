"""Rewrite a bias-less Gemm as MatMul (with a Transpose of B for transB=1).

Brevitas' default (dynamo) exporter writes a QuantLinear without bias as a two-input
Gemm; qonnx's GemmToMatMul expects the bias input and fails on it. The rewrite gives
the graph the TorchScript exporter writes for the same layer (Transpose + MatMul), so
both exports compile the same way; alpha != 1 becomes a Mul behind the MatMul.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import get_attrs


def gemm_without_bias_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Gemm" or (len(node.input) > 2 and node.input[2]):
            nodes.append(node)
            continue
        a = get_attrs(node)
        if a.get("transA", 0):
            raise BnnforgeError(f"node {node.name!r} (Gemm): transA=1 is not supported; export the layer "
                                "as a plain linear layer (x @ W^T)")
        b_name = node.input[1]
        if a.get("transB", 0):
            nodes.append(helper.make_node("Transpose", [b_name], [f"{node.name}_B_transposed"], perm=[1, 0],
                                          name=f"{node.name}_transpose_B"))
            b_name = f"{node.name}_B_transposed"
        alpha = float(a.get("alpha", 1.0))
        out = node.output[0] if alpha == 1.0 else f"{node.name}_matmul_out"
        nodes.append(helper.make_node("MatMul", [node.input[0], b_name], [out], name=f"{node.name}_matmul"))
        if alpha != 1.0:
            model.graph.initializer.append(
                numpy_helper.from_array(np.array(alpha, dtype=np.float32), f"{node.name}_alpha"))
            nodes.append(helper.make_node("Mul", [out, f"{node.name}_alpha"], [node.output[0]],
                                          name=f"{node.name}_alpha_mul"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
