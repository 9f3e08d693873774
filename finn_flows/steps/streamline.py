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

An unsigned k-bit activation quantizer (Quant signed=0, 2 <= k <= 8, one positive
scale) is handled the same way: its integer level 0..2^k-1 (the quantizer's own output
divided by its scale) must be monotonic in d per channel, and gives 2^k-1 sorted
thresholds per channel, level = #{t : d >= T[o, t]} (a MultiThreshold node, attribute
out_bits = k). The next layer then takes unsigned k-bit integers (input_kind "int"),
and its own thresholds see level * scale, as the first layer sees the input quantizer's
integers times its scale. A signed k-bit activation (FINN's W1A2/W2A2 networks: values
-2^(k-1)..2^(k-1)-1, or symmetric when narrow) travels the same way, as its level
value + offset (offset 2^(k-1), or 2^(k-1)-1 narrow), and the next unit subtracts the
offset from every input (attribute input_offset), so its accumulator is the true dot
product: sum w*(l - o), exact, measured against qonnx on Brevitas' own 1W2A models.
k > 8 and non-monotonic levels are refused with the node's name.

Residual joins: the graph is walked in dataflow order, and an Add of two activation
streams quantized alike (one shared quantizer: same kind, bits and scale) becomes
StreamAdd, an exact integer add of the two wires; the float ops and the quantizer after
it become thresholds on that integer sum (finn_flows/operators/residual_add.py), and a stream read by several
nodes is forked in hardware (convert_to_hw). A float shortcut or differently quantized
inputs are refused naming the Add.

Sparse fully-connected layers (finn_flows/sparse.py): a MatMul whose tidy weights are the
integers of the binary domain (W = m + q*B, two values) or of a grouped layer ({-1,0,+1})
becomes SparseMatMul (attributes weight_kind, m, q; initializer B or W). Its accumulator
range is max_o sum_i |W[o,i]| * max|x|, and its thresholds are found the same way. A
negative scale flips a pm1_blocks row like a dense one; a sparse01 row keeps its weights
and the channel's output is inverted instead (a third Threshold input, `out_flip`:
y = (acc >= T) XOR flip; k-bit: NT - level).

Convolutions are lowered to the same matrix form: an Im2Col node (channels-last
sliding window, (ky, kx, c) element order) feeds a BinaryMatMul whose rows are the
filters in that order, so every tensor of the streamlined graph is NHWC (or flat),
which is the order the hardware streams. A grouped conv (group G) becomes the
block-diagonal matrix of its groups ({-1,0,+1}: SparseMatMul "pm1_blocks"), a conv with
binary-domain weights a SparseMatMul "sparse01" (see _conv_matrix); both still after an
Im2Col. MaxPool after a 1-bit activation becomes
MaxPoolNHWC (an OR of bits for both 1-bit kinds; after a k-bit activation the unsigned
max of the levels, element_bits = k). A fully-connected layer after a
spatial tensor gets its weight columns permuted from ONNX's (c, y, x) flatten order
to the stream's (y, x, c). Anything else is refused with the node's name.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

from bnnforge.errors import BnnforgeError, model_error
from .tidy_up import QONNX_CANNOT_EVALUATE
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, make_model, set_meta

from ..operators import for_qonnx_join

ELEMENTWISE = ("Mul", "Div", "Add", "Sub", "BatchNormalization")
# k-bit activations between layers: up to 4 bits the mvtu compares 2^k-1 thresholds at once
# (OUT_MODE 2), wider ones go through the binary-search requantizer (thresholding.v)
MAX_ACT_BITS = 8
SHAPE_ONLY = ("Flatten", "Reshape")
SPATIAL_OPS = ("Conv", "MaxPool")


def step_streamline(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    items, host_prefix, in_spec, tail = _parse_graph(model)
    return _emit(model, items, host_prefix, in_spec, tail, label_select=cfg.label_select)


# ---------------------------------------------------------------------------
# parsing the tidy graph into layers

class _Layer:
    def __init__(self, matmul, weights, conv=None):
        self.matmul = matmul
        self.weights = weights        # [MH, MW] in {-1,+1}; conv: MW in (ky, kx, c) order
        self.conv = conv              # None (fully connected) or dict(ifm_dim, channels, kernel, stride, pad, ofm_dim)
        self.ops = []                 # elementwise nodes after the MatMul
        self.act = None               # the activation quantizer (None: last layer)
        self.act_bits = 1             # 1, or k for a k-bit activation (MultiThreshold)
        self.act_offset = 0           # signed k-bit activation: level on the wire = value + offset
        self.in_offset = 0            # the same offset of this layer's input (subtracted by the unit)

    @property
    def channels(self) -> int:
        return self.weights.shape[0]


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


def _shapes(model):
    out = {}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[v.name] = tuple(d.dim_value for d in dims)
    return out


def _conv_params(node, model, chw, kind, offset=0):
    """Check a Conv node against what the sliding-window hardware does; return its geometry."""
    a = get_attrs(node)
    name = node.name
    if chw is None:
        raise BnnforgeError(f"node {name!r} (Conv): input is not a known NCHW feature map")
    c, h, w = chw
    if h != w:
        raise BnnforgeError(f"node {name!r} (Conv): feature map {h}x{w} is not square; only square maps are supported")
    if attr_str(a.get("auto_pad", b"NOTSET")) not in ("NOTSET", ""):
        raise BnnforgeError(f"node {name!r} (Conv): auto_pad is not supported; export with explicit pads")
    ks = list(a.get("kernel_shape", []))
    if len(ks) != 2 or ks[0] != ks[1]:
        raise BnnforgeError(f"node {name!r} (Conv): kernel {ks} is not square 2-D; only KxK kernels are supported")
    strides = list(a.get("strides", [1, 1]))
    if len(set(strides)) != 1:
        raise BnnforgeError(f"node {name!r} (Conv): strides {strides} differ per axis; only equal strides are supported")
    dil = list(a.get("dilations", [1, 1]))
    if any(d != 1 for d in dil):
        raise BnnforgeError(f"node {name!r} (Conv): dilations {dil} are not supported (only 1)")
    group = int(a.get("group", 1))
    if group < 1 or c % group:
        raise BnnforgeError(f"node {name!r} (Conv): group={group} does not divide its {c} input channels")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(set(pads)) != 1:
        raise BnnforgeError(f"node {name!r} (Conv): asymmetric pads {pads}; only the same padding on every side is supported")
    k, s, pad = ks[0], strides[0], pads[0]
    if pad and kind == "bipolar":
        raise BnnforgeError(
            f"node {name!r} (Conv): zero padding on bipolar {{-1,+1}} activations computes with the value 0, "
            "which a 1-bit bipolar stream cannot represent; train with padding=0 or with {0,1} (unipolar) "
            "activations, where the pad value 0 is exact")
    if pad and offset:
        raise BnnforgeError(
            f"node {name!r} (Conv): zero padding after a signed k-bit activation: the stream carries "
            f"levels offset by {offset}, so the pad value 0 is not a level; train with padding=0 or with "
            "unsigned activations")
    if k > h + 2 * pad:
        raise BnnforgeError(f"node {name!r} (Conv): kernel {k} is larger than the padded map {h + 2 * pad}")
    if len(node.input) > 2:
        raise BnnforgeError(f"node {name!r} (Conv): a bias input is not supported (use BatchNorm after the conv)")
    return dict(ifm_dim=h, channels=c, kernel=k, stride=s, pad=pad, ofm_dim=(h + 2 * pad - k) // s + 1,
                group=group)


def _conv_matrix(w: np.ndarray, conv: dict, name: str, sparse: bool):
    """The lowered conv's integer matrix [OC, K*K*C] in the sliding window's (ky, kx, c)
    column order, and its weight kind (finn_flows/sparse.py).

    A grouped conv (group G) is block-diagonal in the channel axis: output o reads only
    the C/G input channels of its group, so its row is 0 at every other channel of every
    kernel position. Those zeros make a {-1,+1} conv a {-1,0,+1} (pm1_blocks) matrix,
    whose zero PE x SIMD blocks mvtu_sparse neither stores nor visits when SIMD divides
    C/G and PE divides OC/G."""
    from ..sparse import classify_weights

    oc, cg, k, _ = w.shape
    g, c = conv["group"], conv["channels"]
    if cg * g != c:
        raise BnnforgeError(f"node {name!r} (Conv): weights for {cg} input channels per group x group={g} "
                            f"do not match the {c} input channels")
    if oc % g:
        raise BnnforgeError(f"node {name!r} (Conv): group={g} does not divide its {oc} output channels")
    full = np.zeros((oc, c, k, k), dtype=np.float64)
    og = oc // g
    for j in range(g):
        full[j * og:(j + 1) * og, j * cg:(j + 1) * cg] = w[j * og:(j + 1) * og]
    try:
        kind, m, q = classify_weights(full, name, op="Conv", sparse=sparse)
    except BnnforgeError as e:
        if g == 1:
            raise
        raise BnnforgeError(f"{e}; with group={g} the zeros outside the groups count as one more "
                            "value, so a grouped conv needs {-1,+1} weights, or two levels one of "
                            "which is 0") from None
    mat = full.transpose(0, 2, 3, 1).reshape(oc, -1)   # rows in (ky, kx, c) order
    return mat.astype(np.int8 if kind == "binary" else np.int64), kind, m, q


def _pool_params(node, chw):
    a = get_attrs(node)
    name = node.name
    if chw is None:
        raise BnnforgeError(f"node {name!r} (MaxPool): input is not a known NCHW feature map")
    c, h, w = chw
    ks = list(a.get("kernel_shape", []))
    strides = list(a.get("strides", ks))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(ks) != 2 or ks[0] != ks[1] or strides != ks:
        raise BnnforgeError(f"node {name!r} (MaxPool): kernel {ks} with strides {strides}; only square "
                            "non-overlapping pools (stride = kernel) are supported")
    if any(pads) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise BnnforgeError(f"node {name!r} (MaxPool): pads/ceil_mode/dilations are not supported")
    if h != w or h % ks[0]:
        raise BnnforgeError(f"node {name!r} (MaxPool): a {ks[0]}x{ks[0]} pool does not tile the {h}x{w} feature map")
    return dict(ifm_dim=h, channels=c, kernel=ks[0])


# Ops that need a whole feature map before their first output: a per-image statistic.
WHOLE_FRAME_OPS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax")


def _refuse_whole_frame_ops(model):
    for n in model.graph.node:
        if n.op_type in WHOLE_FRAME_OPS:
            raise BnnforgeError(
                f"node {n.name!r} ({n.op_type}): a per-image statistic feeding the activations (e.g. a "
                "squeeze-excitation shift, SD-BNN's dynamic ASD) cannot stream: every output of the layer "
                "would wait for the frame's last input, and the shift it computes is a real value per image, "
                "not a constant a threshold can absorb; train with the static per-channel shift "
                "(sdbnn, asd: static), which folds into the thresholds")


def _host_prefix(model, consumers):
    """The nodes from the graph input to the first activation quantizer (run on the host)."""
    host, tensor = [], model.graph.input[0].name
    while True:
        nxt = [n for n in consumers.get(tensor, [])]
        if len(nxt) != 1:
            raise BnnforgeError(f"tensor {tensor!r}: expected one consumer before the input quantizer, "
                                f"found {len(nxt)}")
        node = nxt[0]
        host.append(node)
        tensor = node.output[0]
        if node.op_type in ("Quant", "BipolarQuant"):
            return host, tensor
        if node.op_type not in ELEMENTWISE + SHAPE_ONLY:
            raise BnnforgeError(
                f"node {node.name!r}: op {node.op_type} before the input quantizer is not supported")


def _topological(model, start: str, consts: set) -> list:
    """Nodes fed (transitively) by tensor `start`, in an order where every node comes
    after the producers of its inputs (Kahn's algorithm over the dataflow edges)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = _consumers(model)
    reach, todo = set(), [start]
    while todo:
        for n in consumers.get(todo.pop(), []):
            if id(n) not in reach:
                reach.add(id(n))
                todo.extend(n.output)
    nodes = [n for n in model.graph.node if id(n) in reach]
    waiting = {}
    for n in nodes:
        deps = {i for i in n.input if i and i not in consts and i != start}
        for i in deps:
            if i not in producer or id(producer[i]) not in reach:
                raise BnnforgeError(f"node {n.name!r} ({n.op_type}): input {i!r} is neither a constant nor "
                                    "computed from the image (a second graph input is not supported)")
        waiting[id(n)] = len({id(producer[i]) for i in deps})
    ready = [n for n in nodes if waiting[id(n)] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for c in {id(c): c for o in n.output for c in consumers.get(o, [])}.values():
            if id(c) in waiting:
                waiting[id(c)] -= 1
                if waiting[id(c)] == 0:
                    ready.append(c)
    if len(order) != len(nodes):
        stuck = next(n for n in nodes if waiting[id(n)] > 0)
        raise BnnforgeError(f"node {stuck.name!r} ({stuck.op_type}): the graph has a cycle through this node")
    return order


class _Wire:
    """A quantized activation stream: the meaning of its integers and its layout."""

    def __init__(self, kind, bits, signed, offset, scale, chw, spatial, produced, source):
        self.source = source      # the tensor the stream was produced as (a flatten keeps it)
        self.kind, self.bits, self.signed, self.offset, self.scale = kind, bits, signed, offset, scale
        self.chw = chw            # (C, H, W) of a feature map, None once flattened
        self.spatial = spatial    # the (C, H, W) a flatten came from (an FC layer permutes its columns)
        self.produced = produced  # computed on the device (False: the input quantizer's output)

    def same_levels(self, other) -> bool:
        return (self.kind, self.bits, self.signed, self.offset) == (other.kind, other.bits, other.signed,
                                                                    other.offset) \
            and np.isclose(self.scale, other.scale, rtol=1e-6, atol=0)

    def describe(self) -> str:
        sign = "signed" if self.signed and self.kind == "int" else ""
        return f"{sign} {self.bits}-bit {self.kind} scale {self.scale:g}".strip()


class _Pool:
    def __init__(self, node, params, in_tensor, wire):
        self.node, self.params, self.in_tensor, self.wire = node, params, in_tensor, wire


def _parse_graph(model):
    """The tidy graph as items in dataflow order: layers (a matrix product and the ops up
    to its activation quantizer), pools, residual adds. Every stream is the output of an
    activation quantizer; only those may feed more than one node."""
    g = model.graph
    _refuse_whole_frame_ops(model)
    consumers = _consumers(model)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    outputs = {o.name for o in g.output}
    host, tensor = _host_prefix(model, consumers)
    kind, bits, signed, scale = _act_spec(host[-1], model)
    in_spec = {"kind": kind, "bits": bits, "signed": signed, "scale": _scalar_scale(scale, host[-1]),
               "tensor": tensor}
    shapes = _shapes(model)
    chw = shapes.get(tensor)
    chw = tuple(chw[1:]) if chw is not None and len(chw) == 4 else None
    state = {tensor: _Wire(kind, bits, signed, 0, in_spec["scale"], chw, chw, False, tensor)}
    items = []
    for node in _topological(model, tensor, set(consts)):
        op = node.op_type
        dyn = [i for i in node.input if i in state]
        for i in node.input:
            if i and i not in state and i not in consts:
                raise BnnforgeError(f"node {node.name!r} ({op}): input {i!r} is not available here")
        for i in dyn:
            if not isinstance(state[i], _Wire) and len(consumers.get(i, [])) > 1:
                src = state[i].matmul.name
                raise BnnforgeError(
                    f"tensor {i!r}: the unquantized output of {src!r} feeds {len(consumers[i])} nodes; only "
                    "an activation quantizer's output may branch (quantize before the fork, e.g. with the "
                    "shared quantizer of a residual block)")
        out = node.output[0]
        join = for_qonnx_join(node) if len(dyn) == 2 else None
        if join is not None:   # a node joining two streams (operator modules: a residual Add)
            state[out] = join.recognise(node, dyn, state, shapes)
            items.append(state[out])
            continue
        if len(dyn) != 1:
            raise BnnforgeError(f"node {node.name!r}: unsupported op {op} with {len(dyn)} computed inputs "
                                "(only a residual Add joins two streams)")
        x = state[dyn[0]]
        if isinstance(x, _Wire):
            state[out] = _on_wire(node, x, dyn[0], model, consts, shapes, items)
        else:
            state[out] = _on_accumulator(node, x, model, consts)
    out = g.output[0].name
    last = state.get(out)
    if isinstance(last, _Wire):
        raise BnnforgeError(f"tensor {out!r}: the network ends in an activation; expected raw logits")
    if getattr(last, "is_join", False):
        raise BnnforgeError(f"node {last.node.name!r}: the network ends in a residual {last.node.op_type}; "
                            "expected a fully-connected classifier")
    layers = [it for it in items if isinstance(it, _Layer)]
    if not layers or last is None:
        raise BnnforgeError("graph has no MatMul layer")
    if last.conv is not None:
        raise BnnforgeError(f"node {last.matmul.name!r}: the last layer is a convolution; "
                            "expected a fully-connected classifier")
    for it in items:
        if it is not last and not isinstance(it, _Pool) and it.act is None:
            raise BnnforgeError(f"node {it.matmul.name!r}: its output reaches no activation quantizer and "
                                "is not the graph output")
    used = {i for n in g.node for i in n.input}
    for it in items:
        t = it.out_tensor
        if t not in used and t not in outputs:
            raise BnnforgeError(f"tensor {t!r}: computed but used by nothing (a dangling branch)")
    # the stream's layout is that of the input quantizer's output: a graph that flattens
    # before its quantizer streams the flat (c, y, x) vector, its first weights unpermuted
    shape = shapes.get(in_spec["tensor"])
    in_spec["nchw"] = list(shape[1:]) if shape is not None and len(shape) == 4 else None
    return items, host, in_spec, out


def _on_wire(node, x, tensor, model, consts, shapes, items):
    """A node taking an activation stream: a layer starts, a pool or a flatten."""
    op = node.op_type
    if op in SHAPE_ONLY:
        # flattening the input of a fully-connected layer changes no value
        return _Wire(x.kind, x.bits, x.signed, x.offset, x.scale, None, x.spatial, x.produced, x.source)
    if op == "MatMul":
        if node.input[1] not in consts:
            raise BnnforgeError(f"node {node.name!r} (MatMul): weights are not a constant")
        w = consts[node.input[1]]
        from bnnforge.hw.hwgraph import get_meta
        from ..sparse import classify_weights  # {-1,+1}, or a sparse form (finn_flows/sparse.py)
        wkind, wm, wq = classify_weights(w, node.name, sparse=node.name in get_meta(model, "sparse_weights", []))
        w = w.T.astype(np.int8 if wkind == "binary" else np.int64)
        spatial = x.spatial if x.chw is None else x.chw
        if spatial is not None and spatial[1] * spatial[2] > 1:
            c, h, ww = spatial
            if w.shape[1] != c * h * ww:
                raise BnnforgeError(f"node {node.name!r} (MatMul): {w.shape[1]} inputs do not match the "
                                    f"flattened {c}x{h}x{ww} feature map")
            # ONNX flattens NCHW as (c, y, x); the stream carries (y, x, c)
            w = w.reshape(-1, c, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        layer = _Layer(node, w)
        layer.weight_kind, layer.m, layer.q = wkind, wm, wq
    elif op == "Conv":
        if node.input[1] not in consts:
            raise BnnforgeError(f"node {node.name!r} (Conv): weights are not a constant")
        from bnnforge.hw.hwgraph import get_meta
        w = consts[node.input[1]]
        conv = _conv_params(node, model, x.chw, x.kind, x.offset)
        if w.ndim != 4 or w.shape[2:] != (conv["kernel"], conv["kernel"]):
            raise BnnforgeError(f"node {node.name!r} (Conv): weight shape {list(w.shape)} does not match "
                                f"its {conv['kernel']}x{conv['kernel']} kernel")
        wm, wkind, m_, q_ = _conv_matrix(w, conv, node.name,
                                         sparse=node.name in get_meta(model, "sparse_weights", []))
        layer = _Layer(node, wm, conv=conv)
        layer.weight_kind, layer.m, layer.q = wkind, m_, q_
        layer.out_chw = (w.shape[0], conv["ofm_dim"], conv["ofm_dim"])
    elif op == "MaxPool" and x.produced and x.chw is not None:
        pool = _Pool(node, _pool_params(node, x.chw), x.source, x)
        pool.out_tensor = node.output[0]
        items.append(pool)
        d = x.chw[1] // pool.params["kernel"]
        return _Wire(x.kind, x.bits, x.signed, x.offset, x.scale, (x.chw[0], d, d), (x.chw[0], d, d), True,
                     node.output[0])
    else:
        if op == "MaxPool":
            hint = " (only a MaxPool on a feature map after an activation is supported)"
        elif op in ("Quant", "BipolarQuant"):
            hint = " (a second quantizer directly on an activation stream)"
        else:
            hint = ""
        raise BnnforgeError(f"node {node.name!r}: unsupported op {op} here{hint}")
    layer.in_scale, layer.in_kind, layer.in_offset = x.scale, x.kind, x.offset
    layer.in_wire, layer.in_tensor, layer.out_tensor = x, x.source, node.output[0]
    items.append(layer)
    return layer


def _on_accumulator(node, layer, model, consts):
    """A node after a matrix product or a residual add: float ops, then its quantizer."""
    op = node.op_type
    if op in ELEMENTWISE:
        for i in node.input[1:]:
            if i not in consts:
                raise BnnforgeError(f"node {node.name!r} ({op}): operand {i!r} is not a constant")
        layer.ops.append(node)
        layer.out_tensor = node.output[0]
        return layer
    if op in ("Quant", "BipolarQuant"):
        k, b, sgn, s = _act_spec(node, model)
        if b > MAX_ACT_BITS:
            raise BnnforgeError(
                f"node {node.name!r} ({op}): {b}-bit activation; at most {MAX_ACT_BITS}-bit "
                f"activations between layers (the requantizer's binary search over 2^k-1 thresholds)")
        layer.act, layer.act_kind, layer.act_bits = node, k, b
        if b > 1 and sgn:  # the wire carries the level value + offset, 0..2^k-1 (or 2^k-2 narrow)
            layer.act_offset = (1 << (b - 1)) - int(get_attrs(node).get("narrow", 0))
        layer.out_tensor = node.output[0]
        chw = getattr(layer, "out_chw", None) if isinstance(layer, _Layer) else layer.wire.chw
        join = getattr(layer, "is_join", False)
        spatial = chw if (join or layer.conv is not None) else None
        if join and chw is None:
            spatial = layer.wire.spatial
        # a k-bit wire carries unsigned levels (a signed activation's value + offset)
        wire_signed = k == "bipolar" if b == 1 else False
        return _Wire(k, b, wire_signed, layer.act_offset, _scalar_scale(s, node), chw, spatial, True,
                     node.output[0])
    if op == "MaxPool":
        hint = (" (a pool before the activation compares accumulators; move MaxPool after the "
                "activation quantizer, where it is an exact OR of bits)")
    elif op == "Conv":
        hint = " (a convolution must follow an activation quantizer)"
    else:
        hint = ""
    raise BnnforgeError(f"node {node.name!r}: unsupported op {op} here{hint}")


# ---------------------------------------------------------------------------
# evaluating the float ops on every candidate accumulator value

def _apply_ops(x, ops, model):
    """x: [n, C] (fully connected) or [n, C, 1, 1] (conv: constants broadcast as NCHW)."""
    for node in ops:
        c = [np.asarray(initializer(model, i), dtype=np.float64) for i in node.input[1:]]
        if node.op_type == "BatchNormalization" and x.ndim == 4:
            c = [v.reshape(-1, 1, 1) for v in c]
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
    try:
        return _quantize_bits(y, node, model)
    except BnnforgeError:
        raise
    except Exception as e:  # qonnx cannot run this quantizer (bad attribute, shapes)
        raise model_error(e, QONNX_CANNOT_EVALUATE) from None


def _quantize_bits(y, node, model):
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant

    args = [initializer(model, i) for i in node.input[1:]]
    if node.op_type == "BipolarQuant":
        return binary_quant(y, *args) > 0
    a = get_attrs(node)
    return int_quant(y, *args, signed=a.get("signed", 1), narrow=a.get("narrow", 0),
                     rounding_mode=a.get("rounding_mode", b"ROUND").decode()) > 0


def _ops_on_every_accumulator(layer, d_max, model):
    """(d, y): every accumulator value d in [-D, D] as a column, and the graph's float
    ops after the layer applied to it for every output channel ([2D+1, MH], or with
    two trailing unit axes for a conv)."""
    mh = layer.channels
    d = np.arange(-d_max, d_max + 1, dtype=np.float64)[:, None]
    x = d * layer.in_scale * np.ones((1, mh))
    if layer.conv is not None:
        x = x[:, :, None, None]
    y = _apply_ops(x, layer.ops, model)
    if y.shape != x.shape:
        raise BnnforgeError(f"node {layer.matmul.name!r}: ops after it change the output shape to {y.shape}")
    return d, y


def _thresholds(layer, d_max, model):
    """Integer thresholds and row flips of one layer, exactly as the graph computes."""
    mh = layer.channels
    d, y = _ops_on_every_accumulator(layer, d_max, model)
    on = _quantize(y, layer.act, model).reshape(len(d), mh)  # [2D+1, MH] booleans
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


def _quantize_levels(y, node, model):
    """Integer output values of a k-bit Quant: its own output (qonnx's code) divided by its
    one positive scale; exact, the output is value * scale (signed: the caller adds the
    offset that makes it a level 0..2^k-1)."""
    from qonnx.custom_op.general.intquant import int_quant

    args = [initializer(model, i) for i in node.input[1:]]
    a = get_attrs(node)
    try:
        q = int_quant(y, *args, signed=a.get("signed", 1), narrow=a.get("narrow", 0),
                      rounding_mode=a.get("rounding_mode", b"ROUND").decode())
    except Exception as e:  # qonnx cannot run this quantizer (bad attribute, shapes)
        raise model_error(e, QONNX_CANNOT_EVALUATE) from None
    scale = _scalar_scale(args[0], node)
    levels = np.rint(np.asarray(q, dtype=np.float64) / scale)
    if not np.array_equal(levels * scale, np.asarray(q, dtype=np.float64)):
        raise BnnforgeError(f"node {node.name!r} (Quant): output is not an integer multiple of its scale")
    return levels.astype(np.int64)


def _multithresholds(layer, d_max, model):
    """k-bit activation: 2^k-1 integer thresholds per channel and row flips, exactly
    as the graph computes. The graph's ops and quantizer are evaluated on every
    accumulator value d in [-D, D]; the level must be monotonic in d per channel
    (non-increasing: the weight row is flipped, d -> -d). Then
    level(d) = #{t : d >= T[o, t]} with T[o, j-1] = the smallest d of level >= j
    (D + 1 when no d reaches level j), sorted ascending by construction."""
    mh, k = layer.channels, layer.act_bits
    nt = (1 << k) - 1
    d, y = _ops_on_every_accumulator(layer, d_max, model)
    # levels 0..2^k-1 on the wire: a signed activation's value plus its offset
    lv = _quantize_levels(y, layer.act, model).reshape(len(d), mh) + layer.act_offset  # [2D+1, MH]
    if lv.min() < 0 or lv.max() > nt:
        raise BnnforgeError(f"node {layer.act.name!r} (Quant): levels outside 0..{nt} for a {k}-bit activation")
    up = np.all(lv[1:] >= lv[:-1], axis=0)
    down = np.all(lv[1:] <= lv[:-1], axis=0)
    bad = np.where(~(up | down))[0]
    if len(bad):
        raise BnnforgeError(
            f"node {layer.act.name!r} (Quant): output channel {bad[0]} of the {k}-bit activation after "
            f"{layer.matmul.name!r} is not monotonic in the accumulator; cannot be expressed as {nt} thresholds")
    flip = down & ~up
    t = np.empty((mh, nt), dtype=np.int64)
    for o in range(mh):
        col = lv[::-1, o] if flip[o] else lv[:, o]   # flipped row: index i means -d
        for j in range(1, nt + 1):
            hits = np.nonzero(col >= j)[0]
            t[o, j - 1] = (hits[0] - d_max) if len(hits) else d_max + 1
    return t, flip


def _emit(model, items, host_prefix, in_spec, tail, label_select: bool):
    nodes, inits = [], []
    names = {in_spec["tensor"]: "global_in"}   # tidy tensor -> streamlined tensor
    layers = [it for it in items if isinstance(it, _Layer)]
    if in_spec.get("nchw"):
        c, h, w_ = in_spec["nchw"]
        in_shape = [1, h, w_, c]  # the stream is channels-last
    else:
        in_shape = [1, layers[0].weights.shape[1]]
    inputs = [helper.make_tensor_value_info("global_in", TensorProto.INT32, in_shape)]
    i = j = 0
    for item in items:
        if isinstance(item, _Layer):
            names[item.out_tensor] = _emit_layer(model, item, i, names[item.in_tensor], nodes, inits)
            i += 1
        elif getattr(item, "is_join", False):
            names[item.out_tensor] = item.operator.emit_streamlined(model, item, j, [names[t] for t in item.inputs],
                                                                    nodes, inits)
            j += 1
        else:
            src = names[item.in_tensor]
            stem = src[:-len("_out")] if src.endswith("_out") else src
            out = f"{stem}_pooled"
            pl = item.params
            nodes.append(helper.make_node(
                "MaxPoolNHWC", [src], [out], name=f"MaxPoolNHWC_{stem.replace('layer', '')}", domain=DOMAIN,
                ifm_dim=pl["ifm_dim"], channels=pl["channels"], kernel=pl["kernel"],
                element_bits=item.wire.bits))
            names[item.out_tensor] = out
    x_name = names[tail]
    n_out = layers[-1].weights.shape[0]
    if label_select:
        nodes.append(helper.make_node("LabelSelect", [x_name], ["global_out"], name="LabelSelect_0",
                                      domain=DOMAIN, num_labels=n_out))
        outputs = [helper.make_tensor_value_info("global_out", TensorProto.INT32, [1, 1])]
    else:
        nodes[-1].output[0] = "global_out"
        outputs = [helper.make_tensor_value_info("global_out", TensorProto.INT32, [1, n_out])]
    new = make_model(nodes, inputs, outputs, inits, name="streamlined")
    set_meta(new, "input", {k: in_spec.get(k) for k in ("kind", "bits", "signed", "scale", "nchw")})
    set_meta(new, "host_prefix", _host_prefix_model(model, host_prefix, in_spec))
    return new


def _emit_layer(model, layer, i, x_name, nodes, inits) -> str:
    """BinaryMatMul | SparseMatMul (+ Threshold | MultiThreshold) of layer i; returns the
    name of its output tensor."""
    wire = layer.in_wire
    kind, bits, signed, offset = wire.kind, wire.bits, wire.signed, wire.offset
    mh, mw = layer.weights.shape
    lo, hi = input_range(kind, bits, signed)
    lo, hi = lo - offset, hi - offset   # the values the wire's levels stand for
    d_max = mw * max(abs(lo), abs(hi))
    w = layer.weights.astype(np.int8)
    wkind, out_flip = getattr(layer, "weight_kind", "binary"), None
    if wkind != "binary":  # sparse forms: |acc| <= max_o sum_i |W[o,i]| * max|x|
        from ..sparse import acc_range
        d_max = acc_range(layer.weights, max(abs(lo), abs(hi)))
        w = layer.weights.astype(np.int64)
    mm_attrs = dict(input_kind=kind, input_bits=bits, input_signed=int(signed), source_node=layer.matmul.name)
    if offset:  # the unit subtracts it from every input level: its accumulator is the true dot product
        if wkind != "binary":
            raise BnnforgeError(
                f"node {layer.matmul.name!r}: multi-level weights ({wkind}: {{-1,0,+1}} or {{m, m+q}}, "
                "e.g. 2-bit weights) after a signed k-bit activation are not supported: the block-sparse "
                "unit takes no input offset and general k-bit weights have no unit yet; use 1-bit "
                "weights (W1A2) there")
        mm_attrs["input_offset"] = int(offset)
    if layer.conv is not None:
        cv = layer.conv
        nodes.append(helper.make_node(
            "Im2Col", [x_name], [f"layer{i}_windows"], name=f"Im2Col_{i}", domain=DOMAIN,
            ifm_dim=cv["ifm_dim"], channels=cv["channels"], kernel=cv["kernel"], stride=cv["stride"],
            pad=cv["pad"], ofm_dim=cv["ofm_dim"], source_node=layer.matmul.name))
        x_name = f"layer{i}_windows"
    acc = f"layer{i}_acc"
    out = acc
    if layer.act is not None:
        t, flip = (_multithresholds if layer.act_bits > 1 else _thresholds)(layer, d_max, model)
        if wkind == "sparse01":  # a flipped row would leave {m, m+q}: invert the output instead
            from ..sparse import invert_thresholds
            t, out_flip = invert_thresholds(t, flip), flip
        else:
            w[flip] *= -1
        inits.append(numpy_helper.from_array(t, f"layer{i}_thresholds"))
    elif _argmax_scale_is_negative(layer, model):
        # one negative scale shared by all outputs (e.g. a TensorNorm with weight < 0): the
        # argmax of -s*acc is the argmax of the accumulator of the negated weights
        if wkind not in ("binary", "pm1_blocks"):
            raise BnnforgeError(f"node {layer.matmul.name!r}: a negative scale after the last layer "
                                f"needs negated weights, which the {wkind} form cannot hold")
        w = -w
    if wkind == "binary":
        nodes.append(helper.make_node("BinaryMatMul", [x_name, f"layer{i}_weights"], [acc],
                                      name=f"BinaryMatMul_{i}", domain=DOMAIN, **mm_attrs))
    else:  # initializer: B in {0,1} (sparse01, W = m + q*B) or W in {-1,0,+1} (pm1_blocks)
        nodes.append(helper.make_node("SparseMatMul", [x_name, f"layer{i}_weights"], [acc],
                                      name=f"SparseMatMul_{i}", domain=DOMAIN, weight_kind=wkind,
                                      m=int(layer.m), q=int(layer.q), **mm_attrs))
        w = ((w - layer.m) // layer.q).astype(np.uint8) if wkind == "sparse01" else w.astype(np.int8)
    if layer.act is not None:
        out = f"layer{i}_out"
        _emit_activation(layer, acc, out, f"layer{i}", f"_{i}", -d_max, d_max, nodes, inits, out_flip)
    inits.append(numpy_helper.from_array(w, f"layer{i}_weights"))
    return out


def _emit_activation(item, acc, out, stem, suffix, acc_min, acc_max, nodes, inits, out_flip) -> None:
    """Threshold (1-bit) or MultiThreshold (k-bit: level = #{t : acc >= T[o, t]}; the next
    layer takes the levels as unsigned k-bit integers (its in_scale is this quantizer's
    scale) and, after a signed activation, subtracts the offset: value = level - offset)."""
    if item.act_bits > 1:
        nodes.append(helper.make_node("MultiThreshold", [acc, f"{stem}_thresholds"], [out],
                                      name=f"MultiThreshold{suffix}", domain=DOMAIN, output_kind="int",
                                      out_bits=item.act_bits, acc_min=int(acc_min), acc_max=int(acc_max),
                                      level_offset=int(item.act_offset)))
    else:
        nodes.append(helper.make_node("Threshold", [acc, f"{stem}_thresholds"], [out],
                                      name=f"Threshold{suffix}", domain=DOMAIN, output_kind=item.act_kind,
                                      acc_min=int(acc_min), acc_max=int(acc_max)))
    if out_flip is not None and out_flip.any():  # inverted channels: y = NT - level
        nodes[-1].input.append(f"{stem}_out_flip")
        inits.append(numpy_helper.from_array(out_flip.astype(np.uint8), f"{stem}_out_flip"))


def _argmax_scale_is_negative(layer, model) -> bool:
    """The last layer's float ops must be one nonzero scale and one bias for all
    channels, else argmax over raw accumulators would differ from the logits; returns
    whether that scale is negative."""
    mh = layer.weights.shape[0]
    probe = np.array([[-1.0], [0.0], [1.0]]) * np.ones((1, mh))
    y = _apply_ops(probe * layer.in_scale, layer.ops, model)
    slope = y[2] - y[1]
    if not (np.all(slope != 0) and np.allclose(slope, slope[0], rtol=1e-6)
            and np.allclose(y[1], y[1][0], rtol=1e-6, atol=1e-9)):
        raise BnnforgeError(
            f"node {layer.matmul.name!r}: the ops after the last layer are not one scale and one "
            "bias shared by all outputs; the label select over raw accumulators would change the argmax "
            "(use unscaled weights and a per-tensor norm on the last layer)")
    return bool(slope[0] < 0)


def _host_prefix_model(model, host_nodes, in_spec):
    """The host-side input quantization as a standalone ONNX model (hex of its bytes)."""
    used = {i for n in host_nodes for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    out = helper.make_tensor_value_info(in_spec["tensor"], TensorProto.FLOAT, None)
    g = helper.make_graph(list(host_nodes), "host_input", [model.graph.input[0]], [out], initializer=inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m.SerializeToString().hex()
