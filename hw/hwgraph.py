"""The project's own ONNX custom ops, as plain nodes in the `bnnforge.custom_op` domain.

The hardware-layer graph is the contract between the compiler (finn_flows/, which
writes it), code generation (hw/) and the golden model (sim/); its node accessors
live here, at the bottom, so that hw/ and sim/ need nothing from the compiler.

Streamlined graph (integer semantics, any folding):
  BinaryMatMul(x, W)  W in {-1,+1} (int8, [MH, MW]); attrs input_kind, input_bits, input_signed
  Threshold(acc, T)   y = acc >= T (int64 [MH]); attr output_kind ("bipolar"/"unipolar")
  MultiThreshold(acc, T)  y = #{t : acc >= T[o, t]} (int64 [MH, 2^k-1], rows sorted); attr
                      out_bits = k: an unsigned k-bit activation for the next layer
  LabelSelect(acc)    index of the largest value, lowest index on a tie
  SparseMatMul(x, W)  sparse layer (finn_flows/sparse.py, hw/memfiles_sparse.py): attrs weight_kind ("sparse01": the
                      initializer is B in {0,1}, W = m + q*B; "pm1_blocks": W in {-1,0,+1}),
                      m, q, input_kind, input_bits, input_signed
  Threshold / MultiThreshold may take a third input `out_flip` ([MH] bits): the output
                      of a flipped channel is inverted (1-bit: not y; k-bit: NT - level)
Hardware graph:
  MVTU(x, Wbits, T)   matrix-vector-threshold unit, see docs/hw_interfaces.md
  MVTUSparse(x, W, T, flip)  block-sparse unit mvtu_sparse: MVTU's attrs plus weight_kind,
                      m, q and NNZ, STEPS of its folding
  LabelSelect(acc)

  SlidingWindow, StreamingMaxPool  see hw/rtl/sliding_window.v, maxpool_bin.v
  StreamAdd(a, b)     residual join: a + b of two streams alike (attrs C, pixels, EB, PE lanes)
  Thresholding(x, T[, flip])  standalone multi-threshold unit on an integer stream (C, pixels,
                      IN_BITS, OUT_BITS, PE lanes), y = #{t : x >= T[c, t]}, flipped: NT - y
  StreamFork(x) -> N copies of a stream read by N nodes (PE lanes, EB element bits)

Graph-level facts travel in metadata_props (`bnnforge.*` keys), so every saved
model is self-contained and opens in Netron.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError

DOMAIN = "bnnforge.custom_op"
MODES = {"xnor": 0, "and": 1, "addsub": 2}


def get_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else v


def set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise BnnforgeError(f"tensor {name!r}: no initializer in the graph")


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            del model.graph.initializer[i]
            break
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))


def get_meta(model: onnx.ModelProto, key: str, default=None):
    for p in model.metadata_props:
        if p.key == f"bnnforge.{key}":
            return json.loads(p.value)
    return default


def set_meta(model: onnx.ModelProto, key: str, value) -> None:
    full = f"bnnforge.{key}"
    for p in model.metadata_props:
        if p.key == full:
            p.value = json.dumps(value)
            return
    model.metadata_props.add(key=full, value=json.dumps(value))


def hw_nodes(model: onnx.ModelProto, op_type: str | None = None) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and (op_type is None or n.op_type == op_type)]


def signed_bits_for(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def input_range(kind: str, bits: int, signed: bool) -> tuple[int, int]:
    if kind == "bipolar":
        return -1, 1
    if kind == "unipolar":
        return 0, 1
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def make_model(nodes, inputs, outputs, initializers, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, producer_name="bnnforge",
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    return model


def producers(model: onnx.ModelProto) -> dict:
    return {o: n for n in model.graph.node for o in n.output}


def readers(model: onnx.ModelProto) -> dict:
    out = {}
    for n in model.graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out
