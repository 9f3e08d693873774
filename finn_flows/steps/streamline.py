"""step_streamline: the tidy QONNX graph becomes an integer graph of BinaryMatMul +
Threshold layers (and a final LabelSelect).

How each layer's thresholds are found: the layer's accumulator d (exact signed dot
product of {-1,+1} weights with the integer inputs) takes values in [-D, D]. The
float ops between the MatMul and the next 1-bit activation quantizer (weight
scales, BatchNorm, Mul/Add/Sub/Div by constants, the quantizer itself, all taken
from the graph and evaluated with qonnx's own quantizer code) are applied to every
candidate d at once. The resulting 0/1 pattern per output channel must be monotonic:
non-decreasing gives `d >= T`; non-increasing (a negative scale) flips the weight row
(d -> -d) and gives `-d >= T`; constant patterns put T at the range ends. So BatchNorm,
scales, biases and the activation's tie rule are absorbed exactly, with no algebra that
could round differently from the graph.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

from bnnforge.errors import BnnforgeError
from ..hwgraph import DOMAIN, get_attrs, initializer, input_range, make_model, set_meta

ELEMENTWISE = ("Mul", "Div", "Add", "Sub", "BatchNormalization")
SHAPE_ONLY = ("Flatten", "Reshape")


def step_streamline(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    layers, host_prefix, in_spec, tail = _parse_chain(model)
    return _emit(model, layers, host_prefix, in_spec, tail, label_select=cfg.label_select)


# ---------------------------------------------------------------------------
# parsing the tidy graph into layers

class _Layer:
    def __init__(self, matmul, weights):
        self.matmul = matmul
        self.weights = weights        # [MH, MW] in {-1,+1}
        self.ops = []                 # elementwise nodes after the MatMul
        self.act = None               # the 1-bit activation quantizer (None: last layer)


def _consumers(model):
    out = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _act_spec(node, model):
    """(kind, bits, signed, scale) of an activation quantizer node."""
    consts = {t.name for t in model.graph.initializer}
    if any(i not in consts for i in node.input[1:]):
        raise BnnforgeError(f"node {node.name!r} ({node.op_type}): quantizer parameters must be constants")
    if node.op_type == "BipolarQuant":
        scale = initializer(model, node.input[1])
        return "bipolar", 1, True, scale
    a = get_attrs(node)
    scale, zp, bits = (initializer(model, n) for n in node.input[1:4])
    if np.any(zp != 0):
        raise BnnforgeError(f"node {node.name!r} (Quant): non-zero zero point is not supported")
    bits = int(np.asarray(bits).item())
    signed = bool(a.get("signed", 1))
    if bits == 1:
        return ("bipolar" if signed else "unipolar"), 1, signed, scale
    return "int", bits, signed, scale


def _scalar_scale(scale, node):
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    if not np.all(s == s[0]) or s[0] <= 0:
        raise BnnforgeError(f"node {node.name!r} ({node.op_type}): activation scale must be one positive value")
    return float(s[0])


def _parse_chain(model):
    g = model.graph
    consumers = _consumers(model)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    outputs = {o.name for o in g.output}

    # 1. host-side prefix: from the graph input to the first activation quantizer
    host, tensor = [], g.input[0].name
    while True:
        nxt = [n for n in consumers.get(tensor, [])]
        if len(nxt) != 1:
            raise BnnforgeError(f"tensor {tensor!r}: expected one consumer, found {len(nxt)} (graph must be a chain)")
        node = nxt[0]
        host.append(node)
        tensor = node.output[0]
        if node.op_type in ("Quant", "BipolarQuant"):
            break
        if node.op_type not in ELEMENTWISE + SHAPE_ONLY:
            raise BnnforgeError(
                f"node {node.name!r}: op {node.op_type} before the input quantizer is not supported")
    kind, bits, signed, scale = _act_spec(host[-1], model)
    in_spec = {"kind": kind, "bits": bits, "signed": signed, "scale": _scalar_scale(scale, host[-1]),
               "tensor": tensor}

    # 2. layers
    layers, cur_scale = [], in_spec["scale"]
    layer = None
    while tensor not in outputs:
        nxt = consumers.get(tensor, [])
        if len(nxt) != 1:
            raise BnnforgeError(f"tensor {tensor!r}: expected one consumer, found {len(nxt)} (graph must be a chain)")
        node = nxt[0]
        op = node.op_type
        if op in SHAPE_ONLY and layer is None:
            pass  # flattening the input of a fully-connected layer changes no value
        elif op == "MatMul":
            if node.input[1] not in consts:
                raise BnnforgeError(f"node {node.name!r} (MatMul): weights are not a constant")
            w = consts[node.input[1]]
            if not np.all(np.abs(w) == 1):
                raise BnnforgeError(f"node {node.name!r} (MatMul): weights are not in {{-1,+1}} after tidy-up")
            layer = _Layer(node, w.T.astype(np.int8))
            layer.in_scale = cur_scale
            layers.append(layer)
        elif op in ELEMENTWISE and layer is not None:
            for i in node.input[1:]:
                if i not in consts:
                    raise BnnforgeError(f"node {node.name!r} ({op}): operand {i!r} is not a constant")
            layer.ops.append(node)
        elif op in ("Quant", "BipolarQuant") and layer is not None:
            k, b, _, s = _act_spec(node, model)
            if b != 1:
                raise BnnforgeError(
                    f"node {node.name!r} ({op}): {b}-bit activation; layers need 1-bit activations "
                    "(bipolar or unipolar) between them")
            layer.act = node
            layer.act_kind = k
            cur_scale = _scalar_scale(s, node)
            layer = None
        else:
            hint = " (convolutions and pooling are not in the fully-connected flow)" \
                if op in ("Conv", "MaxPool", "Im2Col") else ""
            raise BnnforgeError(f"node {node.name!r}: unsupported op {op} here{hint}")
        tensor = node.output[0]
    if not layers:
        raise BnnforgeError("graph has no MatMul layer")
    if layers[-1].act is not None:
        raise BnnforgeError(
            f"node {layers[-1].act.name!r}: the last layer ends in an activation; expected raw logits")
    return layers, host, in_spec, tensor


# ---------------------------------------------------------------------------
# evaluating the float ops on every candidate accumulator value

def _apply_ops(x, ops, model):
    for node in ops:
        c = [np.asarray(initializer(model, i), dtype=np.float64) for i in node.input[1:]]
        if node.op_type == "Mul":
            x = x * c[0]
        elif node.op_type == "Div":
            x = x / c[0]
        elif node.op_type == "Add":
            x = x + c[0]
        elif node.op_type == "Sub":
            x = x - c[0]
        else:  # BatchNormalization over axis 1
            eps = get_attrs(node).get("epsilon", 1e-5)
            gamma, beta, mean, var = c
            x = (x - mean) / np.sqrt(var + eps) * gamma + beta
    return x


def _quantize(y, node, model):
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant

    args = [initializer(model, i) for i in node.input[1:]]
    if node.op_type == "BipolarQuant":
        return binary_quant(y, *args) > 0
    a = get_attrs(node)
    return int_quant(y, *args, signed=a.get("signed", 1), narrow=a.get("narrow", 0),
                     rounding_mode=a.get("rounding_mode", b"ROUND").decode()) > 0


def _thresholds(layer, d_max, model):
    """Integer thresholds and row flips of one layer, exactly as the graph computes."""
    mh = layer.weights.shape[0]
    d = np.arange(-d_max, d_max + 1, dtype=np.float64)[:, None]
    y = _apply_ops(d * layer.in_scale * np.ones((1, mh)), layer.ops, model)
    if y.shape != (len(d), mh):
        raise BnnforgeError(f"node {layer.matmul.name!r}: ops after it change the output shape to {y.shape}")
    on = _quantize(y, layer.act, model)  # [2D+1, MH] booleans
    up = np.all(on[1:] >= on[:-1], axis=0)
    down = np.all(on[1:] <= on[:-1], axis=0)
    bad = np.where(~(up | down))[0]
    if len(bad):
        raise BnnforgeError(
            f"node {layer.matmul.name!r}: output channel {bad[0]} is not monotonic in the accumulator; "
            "cannot be expressed as one threshold")
    flip = down & ~up
    t = np.empty(mh, dtype=np.int64)
    for o in range(mh):
        col = on[::-1, o] if flip[o] else on[:, o]   # flipped row: index i means -d
        hits = np.nonzero(col)[0]
        t[o] = (hits[0] - d_max) if len(hits) else d_max + 1
    return t, flip


def _emit(model, layers, host_prefix, in_spec, tail, label_select: bool):
    nodes, inits = [], []
    kind, bits, signed = in_spec["kind"], in_spec["bits"], in_spec["signed"]
    mw0 = layers[0].weights.shape[1]
    x_name = "global_in"
    inputs = [helper.make_tensor_value_info(x_name, TensorProto.INT32, [1, mw0])]
    for i, layer in enumerate(layers):
        mh, mw = layer.weights.shape
        lo, hi = input_range(kind, bits, signed)
        d_max = mw * max(abs(lo), abs(hi))
        w = layer.weights.astype(np.int8)
        mm_attrs = dict(input_kind=kind, input_bits=bits, input_signed=int(signed), source_node=layer.matmul.name)
        acc = f"layer{i}_acc"
        out = acc
        if layer.act is not None:
            t, flip = _thresholds(layer, d_max, model)
            w[flip] *= -1
            inits.append(numpy_helper.from_array(t, f"layer{i}_thresholds"))
        else:
            _check_argmax_preserving(layer, d_max, model)
        nodes.append(helper.make_node("BinaryMatMul", [x_name, f"layer{i}_weights"], [acc],
                                      name=f"BinaryMatMul_{i}", domain=DOMAIN, **mm_attrs))
        if layer.act is not None:
            out = f"layer{i}_out"
            nodes.append(helper.make_node("Threshold", [acc, f"layer{i}_thresholds"], [out],
                                          name=f"Threshold_{i}", domain=DOMAIN, output_kind=layer.act_kind,
                                          acc_min=-d_max, acc_max=d_max))
            kind, bits, signed = layer.act_kind, 1, layer.act_kind == "bipolar"
        inits.append(numpy_helper.from_array(w, f"layer{i}_weights"))
        x_name = out
    n_out = layers[-1].weights.shape[0]
    if label_select:
        nodes.append(helper.make_node("LabelSelect", [x_name], ["global_out"], name="LabelSelect_0",
                                      domain=DOMAIN, num_labels=n_out))
        outputs = [helper.make_tensor_value_info("global_out", TensorProto.INT32, [1, 1])]
    else:
        nodes[-1].output[0] = "global_out"
        outputs = [helper.make_tensor_value_info("global_out", TensorProto.INT32, [1, n_out])]
    new = make_model(nodes, inputs, outputs, inits, name="streamlined")
    set_meta(new, "input", {k: in_spec[k] for k in ("kind", "bits", "signed", "scale")})
    set_meta(new, "host_prefix", _host_prefix_model(model, host_prefix, in_spec))
    return new


def _check_argmax_preserving(layer, d_max, model):
    """The last layer's float ops must be one positive scale and one bias for all
    channels, else argmax over raw accumulators would differ from the logits."""
    mh = layer.weights.shape[0]
    probe = np.array([[-1.0], [0.0], [1.0]]) * np.ones((1, mh))
    y = _apply_ops(probe * layer.in_scale, layer.ops, model)
    slope = y[2] - y[1]
    if not (np.all(slope > 0) and np.allclose(slope, slope[0], rtol=1e-6)
            and np.allclose(y[1], y[1][0], rtol=1e-6, atol=1e-9)):
        raise BnnforgeError(
            f"node {layer.matmul.name!r}: the ops after the last layer are not one positive scale and one "
            "bias shared by all outputs; the label select over raw accumulators would change the argmax "
            "(use unscaled weights and a per-tensor norm on the last layer)")


def _host_prefix_model(model, host_nodes, in_spec):
    """The host-side input quantization as a standalone ONNX model (hex of its bytes)."""
    used = {i for n in host_nodes for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    out = helper.make_tensor_value_info(in_spec["tensor"], TensorProto.FLOAT, None)
    g = helper.make_graph(list(host_nodes), "host_input", [model.graph.input[0]], [out], initializer=inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m.SerializeToString().hex()
