"""step_convert_to_hw: BinaryMatMul (+ Threshold | MultiThreshold) -> MVTU (out_mode
threshold | multithreshold with out_bits k | accumulator); Im2Col -> SlidingWindow;
MaxPoolNHWC -> StreamingMaxPool; LabelSelect stays.

MVTU nodes start unfolded (PE = SIMD = 1); step_apply_folding sets the folding
(and the SIMD of sliding windows and pools, which follow their MVTU neighbours).
Weights become bits (1 = +1) as the hardware stores them. An MVTU after a sliding
window runs once per output pixel (attribute `pixels`).
SparseMatMul (+ Threshold | MultiThreshold) -> MVTUSparse (block-sparse unit
mvtu_sparse, see _sparse_to_hw); it shares the layer numbering with MVTU
(e.g. MVTUSparse_0, MVTUSparse_1, MVTU_2) and is folded the same way. Behind a sliding
window (grouped or binary-domain convolutions) it runs once per output pixel too.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, signed_bits_for

MODE_OF_KIND = {"bipolar": "xnor", "unipolar": "and", "int": "addsub"}


def step_convert_to_hw(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    nodes = list(model.graph.node)
    out_nodes, inits = [], {t.name: t for t in model.graph.initializer}
    i = 0
    layer = 0
    pixels = 1           # vectors per frame for the next MVTU (output pixels of its sliding window)
    while i < len(nodes):
        node = nodes[i]
        if node.op_type == "Im2Col":
            a = get_attrs(node)
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if nxt is None or nxt.op_type not in ("BinaryMatMul", "SparseMatMul"):
                raise BnnforgeError(f"node {node.name!r}: Im2Col must feed a BinaryMatMul or SparseMatMul")
            m = get_attrs(nxt)
            kind = attr_str(m["input_kind"])
            eb = int(m["input_bits"]) if kind == "int" else 1
            out_nodes.append(helper.make_node(
                "SlidingWindow", list(node.input), list(node.output), name=f"SlidingWindow_{layer}",
                domain=DOMAIN, IFM_DIM=a["ifm_dim"], C=a["channels"], K=a["kernel"], S=a["stride"], PAD=a["pad"],
                OFM_DIM=a["ofm_dim"], EB=eb, SIMD=1, input_kind=kind,
                source_node=attr_str(a.get("source_node", node.name))))
            pixels = a["ofm_dim"] ** 2
            i += 1
            continue
        if node.op_type == "MaxPoolNHWC":
            a = get_attrs(node)
            out_nodes.append(helper.make_node(
                "StreamingMaxPool", list(node.input), list(node.output), name=f"StreamingMaxPool_{layer - 1}",
                domain=DOMAIN, IFM_DIM=a["ifm_dim"], C=a["channels"], P=a["kernel"], EB=a["element_bits"], SIMD=1))
            i += 1
            continue
        if node.op_type == "BinaryMatMul":
            a = get_attrs(node)
            w = initializer(model, node.input[1])
            mh, mw = w.shape
            kind = attr_str(a["input_kind"])
            offset = int(a.get("input_offset", 0))
            lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
            d_max = mw * max(abs(lo - offset), abs(hi - offset))
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            fused = (nxt is not None and nxt.op_type in ("Threshold", "MultiThreshold")
                     and nxt.input[0] == node.output[0])
            wide = fused and _wide_requantizer(nxt)
            wname = f"mvtu{layer}_weights"
            inits[wname] = numpy_helper.from_array((w > 0).astype(np.uint8), wname)
            ins = [node.input[0], wname]
            attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                         input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]),
                         acc_bits=signed_bits_for(-d_max - 1, d_max + 1), pixels=pixels,
                         source_node=attr_str(a.get("source_node", node.name)))
            if offset:
                attrs["input_offset"] = offset
            if fused and not wide:
                _fuse_thresholds(model, nxt, layer, mh, inits, ins, attrs)
                out = nxt.output[0]
                i += 2
            else:
                attrs.update(out_mode="accumulator", output_kind="int")
                out = node.output[0]
                i += 1
            out_nodes.append(helper.make_node("MVTU", ins, [out], name=f"MVTU_{layer}", domain=DOMAIN, **attrs))
            if wide:  # k > MVTU_MAX_OUT_BITS: accumulators into a binary-search requantizer
                out_nodes.append(_thresholding_node(model, nxt, f"layer{layer}", mh, pixels,
                                                    attrs["acc_bits"], True, inits))
                i += 1
            pixels = 1
            layer += 1
        elif node.op_type == "SparseMatMul":
            i += _sparse_to_hw(model, nodes, i, layer, out_nodes, inits, pixels)
            layer += 1
            pixels = 1
        elif node.op_type == "StreamAdd":
            i += _add_to_hw(model, nodes, i, out_nodes, inits)
        elif node.op_type == "LabelSelect":
            out_nodes.append(node)
            i += 1
        else:
            raise BnnforgeError(f"node {node.name!r}: op {node.op_type} has no hardware layer")
    out_nodes = insert_stream_forks(out_nodes, {t.name for t in model.graph.output})
    used = {n for node in out_nodes for n in node.input}
    del model.graph.node[:]
    model.graph.node.extend(out_nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(t for name, t in inits.items() if name in used)
    return model


def _fuse_thresholds(model, nxt, layer: int, mh: int, inits: dict, ins: list, attrs: dict) -> None:
    """A Threshold or MultiThreshold after a matrix product: its thresholds become the
    unit's third input and set its output mode (1 bit, or k bits from 2^k-1 sorted
    thresholds per output)."""
    t = initializer(model, nxt.input[1]).astype(np.int64)
    tname = f"mvtu{layer}_thresholds"
    inits[tname] = numpy_helper.from_array(t, tname)
    ins.append(tname)
    ta = get_attrs(nxt)
    if nxt.op_type == "MultiThreshold":
        k = int(ta["out_bits"])
        if t.shape != (mh, (1 << k) - 1) or np.any(np.diff(t, axis=1) < 0):
            raise BnnforgeError(f"node {nxt.name!r}: thresholds {t.shape} are not {mh} sorted "
                                f"rows of 2^{k}-1 for a {k}-bit output")
        attrs.update(out_mode="multithreshold", out_bits=k, output_kind="int")
    else:
        attrs.update(out_mode="threshold", output_kind=attr_str(ta["output_kind"]))


def _sparse_to_hw(model, nodes, i, layer, out_nodes, inits, pixels: int = 1) -> int:
    """SparseMatMul (+ Threshold | MultiThreshold, with its optional output flips) ->
    MVTUSparse_<layer> (hw/rtl/mvtu_sparse.v). Returns the number of nodes consumed.

    Attributes as MVTU's plus weight_kind, m, q (the matrix: m + q*B, or W in {-1,0,+1}),
    NNZ and STEPS of the current folding (apply_folding recomputes them). The weight
    initializer is kept as streamlined (B, or W); ACC_BITS holds [-R-1, R+1] with
    R = max_o sum_i |W[o,i]| * max|x| (thresholds reach R + 1)."""
    from bnnforge.hw.memfiles_sparse import build_sparse_layer
    from bnnforge.hw.memfiles_sparse import integer_matrix

    from ..sparse import acc_range

    node = nodes[i]
    a = get_attrs(node)
    kind = attr_str(a["input_kind"])
    wkind = attr_str(a["weight_kind"])
    stored = initializer(model, node.input[1])
    mh, mw = stored.shape
    lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
    w_int = integer_matrix(wkind, int(a["m"]), int(a["q"]), stored)
    r = acc_range(w_int, max(abs(lo), abs(hi)))
    acc_bits = signed_bits_for(-r - 1, r + 1)
    if acc_bits > 32:
        raise BnnforgeError(f"node {node.name!r}: accumulator range +-{r} needs {acc_bits} bits; "
                            "mvtu_sparse holds at most 32")
    wname = f"mvtu{layer}_weights"
    inits[wname] = numpy_helper.from_array(stored, wname)
    ins = [node.input[0], wname]
    attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                 input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]), acc_bits=acc_bits,
                 pixels=pixels, weight_kind=wkind, m=int(a["m"]), q=int(a["q"]),
                 source_node=attr_str(a.get("source_node", node.name)))
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    used = 1
    wide = (nxt is not None and nxt.op_type == "MultiThreshold" and nxt.input[0] == node.output[0]
            and _wide_requantizer(nxt))
    if not wide and nxt is not None and nxt.op_type in ("Threshold", "MultiThreshold") \
            and nxt.input[0] == node.output[0]:
        _fuse_thresholds(model, nxt, layer, mh, inits, ins, attrs)
        if len(nxt.input) > 2 and nxt.input[2]:
            flip = initializer(model, nxt.input[2]).astype(np.uint8).reshape(-1)
            if flip.shape != (mh,) or np.any(flip > 1):
                raise BnnforgeError(f"node {nxt.name!r}: output flips must be {mh} bits")
            fname = f"mvtu{layer}_out_flip"
            inits[fname] = numpy_helper.from_array(flip, fname)
            ins.append(fname)
        out = nxt.output[0]
        used = 2
    else:
        attrs.update(out_mode="accumulator", output_kind="int")
        out = node.output[0]
    hw = helper.make_node("MVTUSparse", ins, [out], name=f"MVTUSparse_{layer}", domain=DOMAIN, **attrs)
    sl = build_sparse_layer(w_int, 1, 1, wkind, m=int(a["m"]) if wkind == "sparse01" else None)
    hw.attribute.extend([helper.make_attribute("NNZ", sl.nnz), helper.make_attribute("STEPS", sl.steps)])
    out_nodes.append(hw)
    if wide:  # k > MVTU_MAX_OUT_BITS: accumulators into a binary-search requantizer
        out_nodes.append(_thresholding_node(model, nxt, f"layer{layer}", mh, pixels, acc_bits, True, inits))
        used = 2
    return used


def _add_to_hw(model, nodes, i, out_nodes, inits) -> int:
    """StreamAdd + its Threshold | MultiThreshold -> StreamAdd (hw/rtl/stream_add.v) and
    Thresholding (hw/rtl/thresholding.v, a standalone multi-threshold unit on the
    integer sum, with per-channel output flips). Both start with one lane (PE = 1);
    apply_folding gives them the lanes of the stream they join."""
    node = nodes[i]
    a = get_attrs(node)
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if nxt is None or nxt.op_type not in ("Threshold", "MultiThreshold") or nxt.input[0] != node.output[0]:
        raise BnnforgeError(f"node {node.name!r}: a residual add must be followed by its requantizer")
    kind = attr_str(a["input_kind"])
    eb = int(a["input_bits"]) if kind == "int" else 1
    c, pixels = int(a["channels"]), int(a["pixels"])
    src = attr_str(a.get("source_node", node.name))
    j = node.name.rsplit("_", 1)[-1]
    out_nodes.append(helper.make_node(
        "StreamAdd", list(node.input), list(node.output), name=f"StreamAdd_{j}", domain=DOMAIN,
        C=c, pixels=pixels, EB=eb, PE=1, input_kind=kind, source_node=src))
    out_nodes.append(_thresholding_node(model, nxt, j, c, pixels, eb + 1, False, inits, src))
    return 2


# the mvtu's fused multi-threshold output compares with 2^k-1 thresholds in parallel; wider
# requantizers (k up to 8) get the binary-search unit behind an accumulator output
MVTU_MAX_OUT_BITS = 4


def _wide_requantizer(node) -> bool:
    return node.op_type == "MultiThreshold" and int(get_attrs(node)["out_bits"]) > MVTU_MAX_OUT_BITS


def _thresholding_node(model, nxt, tag, c: int, pixels: int, in_bits: int, signed: bool, inits: dict,
                       source: str | None = None):
    """A Threshold | MultiThreshold (with its optional output flips) on an integer stream ->
    Thresholding_<tag> (hw/rtl/thresholding.v), one lane until apply_folding."""
    t = initializer(model, nxt.input[1]).astype(np.int64).reshape(c, -1)
    ta = get_attrs(nxt)
    k = int(ta["out_bits"]) if nxt.op_type == "MultiThreshold" else 1
    if t.shape[1] != (1 << k) - 1 or np.any(np.diff(t, axis=1) < 0):
        raise BnnforgeError(f"node {nxt.name!r}: thresholds {t.shape} are not {c} sorted rows of 2^{k}-1")
    tname = f"thresholding{tag}_thresholds"
    inits[tname] = numpy_helper.from_array(t, tname)
    ins = [nxt.input[0], tname]
    if len(nxt.input) > 2 and nxt.input[2]:
        fname = f"thresholding{tag}_out_flip"
        inits[fname] = numpy_helper.from_array(initializer(model, nxt.input[2]).astype(np.uint8), fname)
        ins.append(fname)
    return helper.make_node(
        "Thresholding", ins, list(nxt.output), name=f"Thresholding_{tag}", domain=DOMAIN,
        C=c, pixels=pixels, IN_BITS=int(in_bits), SIGNED=int(signed), OUT_BITS=k, PE=1,
        output_kind=attr_str(ta.get("output_kind", "int")), source_node=source or nxt.name)


def insert_stream_forks(nodes: list, graph_outputs: set) -> list:
    """A stream read by several nodes gets a StreamFork (hw/rtl/stream_fork.v) right after
    its producer, one output per reader: a hardware stream has one consumer."""
    readers = {}
    for n in nodes:
        for t in n.input[:1] if n.op_type != "StreamAdd" else n.input[:2]:
            readers.setdefault(t, []).append(n)
    out, k = [], 0
    for n in nodes:
        out.append(n)
        for t in n.output:
            rs = readers.get(t, [])
            if len(rs) + (t in graph_outputs) < 2:
                continue
            if t in graph_outputs:
                raise BnnforgeError(f"tensor {t!r}: the graph output is also read inside the graph")
            outs = []
            for r_i, r in enumerate(rs):
                name = f"{t}_fork{r_i}"
                for p, inp in enumerate(r.input):
                    if inp == t:
                        r.input[p] = name
                        break
                outs.append(name)
            out.append(helper.make_node("StreamFork", [t], outs, name=f"StreamFork_{k}", domain=DOMAIN,
                                        N=len(outs), PE=1))
            k += 1
    return out
