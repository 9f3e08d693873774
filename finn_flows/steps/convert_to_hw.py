"""step_convert_to_hw: BinaryMatMul (+ Threshold) -> MVTU; Im2Col -> SlidingWindow;
MaxPoolNHWC -> StreamingMaxPool; LabelSelect stays.

MVTU nodes start unfolded (PE = SIMD = 1); step_apply_folding sets the folding
(and the SIMD of sliding windows and pools, which follow their MVTU neighbours).
Weights become bits (1 = +1) as the hardware stores them. An MVTU after a sliding
window runs once per output pixel (attribute `pixels`).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from ..hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, signed_bits_for

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
            if nxt is None or nxt.op_type != "BinaryMatMul":
                raise BnnforgeError(f"node {node.name!r}: Im2Col must feed a BinaryMatMul")
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
            lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
            d_max = mw * max(abs(lo), abs(hi))
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            fused = nxt is not None and nxt.op_type == "Threshold" and nxt.input[0] == node.output[0]
            wname = f"mvtu{layer}_weights"
            inits[wname] = numpy_helper.from_array((w > 0).astype(np.uint8), wname)
            ins = [node.input[0], wname]
            attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                         input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]),
                         acc_bits=signed_bits_for(-d_max - 1, d_max + 1), pixels=pixels,
                         source_node=attr_str(a.get("source_node", node.name)))
            pixels = 1
            if fused:
                t = initializer(model, nxt.input[1])
                tname = f"mvtu{layer}_thresholds"
                inits[tname] = numpy_helper.from_array(t.astype(np.int64), tname)
                ins.append(tname)
                attrs.update(out_mode="threshold", output_kind=attr_str(get_attrs(nxt)["output_kind"]))
                out = nxt.output[0]
                i += 2
            else:
                attrs.update(out_mode="accumulator", output_kind="int")
                out = node.output[0]
                i += 1
            out_nodes.append(helper.make_node("MVTU", ins, [out], name=f"MVTU_{layer}", domain=DOMAIN, **attrs))
            layer += 1
        elif node.op_type == "LabelSelect":
            out_nodes.append(node)
            i += 1
        else:
            raise BnnforgeError(f"node {node.name!r}: op {node.op_type} has no hardware layer")
    used = {n for node in out_nodes for n in node.input}
    del model.graph.node[:]
    model.graph.node.extend(out_nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(t for name, t in inits.items() if name in used)
    return model
