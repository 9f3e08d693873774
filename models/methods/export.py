"""Export of method models (QONNX) and recovery of the sparse method's integer weights.

`export_method_qonnx` is `models.export.export_qonnx` plus one metadata entry,
`bnnforge.method` (JSON: method name, its parameters, and for binary_domain the
quantization step q), so a compiler can read q even when a layer's B is all 0 or all 1.

`recover_binary_domain(model)` finds every MatMul/Gemm/Conv whose weight comes from a
`Quant` on a constant (possibly through a Transpose), evaluates it with qonnx's own
quantizer code, and returns per layer (B, m, q, scale) with
    W = scale * (q * B + m)       B in {0,1}, m and q integers
checked to hold exactly in float32.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import export_qonnx

METADATA_KEY = "bnnforge.method"


def export_method_qonnx(model, path: str | os.PathLike, input_shape=None) -> Path:
    input_shape = input_shape or (1,) + tuple(model.spec.input_shape)
    path = export_qonnx(model, path, input_shape)
    meta = {"method": getattr(model, "method", None), "params": getattr(model, "config", {})}
    from .binary_domain import BinaryDomainLayer
    qs = sorted({m.q for m in model.modules() if isinstance(m, BinaryDomainLayer)})
    if qs:
        meta["binary_domain_q"] = qs[0] if len(qs) == 1 else qs
    m = onnx.load(str(path))
    entry = next((p for p in m.metadata_props if p.key == METADATA_KEY), None) or m.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, default=str)
    onnx.save(m, str(path))
    return path


def read_method_metadata(model: onnx.ModelProto) -> dict:
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return json.loads(p.value)
    return {}


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def recover_binary_domain(model, q: int | None = None) -> list[dict]:
    """(B, m, q, scale) for every MatMul/Gemm/Conv layer whose weight is a Quant with a
    non-{-1,+1} integer grid.

    `model`: path or ModelProto of an exported (or tidied) graph. `q`: the step to use
    when it cannot be read from the metadata and a layer has only one weight level.
    B is returned in torch layout: [out_features, in_features], or [out, in, k, k] for a
    Conv. Raises BnnforgeError when the dequantized weights are not exactly
    scale * (q * B + m)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.general.intquant import int_quant
    from qonnx.util.cleanup import cleanup_model

    proto = onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model
    meta_q = read_method_metadata(proto).get("binary_domain_q")
    q_default = q if q is not None else (meta_q if isinstance(meta_q, int) else None)
    w = cleanup_model(ModelWrapper(proto))
    g = w.model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = []
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        src, transposed = node.input[1], False
        p = producer.get(src)
        if p is not None and p.op_type == "Transpose":
            transposed, p = True, producer.get(p.input[0])
        if p is None or p.op_type != "Quant" or not all(i in inits for i in p.input):
            continue
        x, scale, zp, bits = (inits[i] for i in p.input)
        a = _attrs(p)
        deq = int_quant(x, scale, zp, bits, signed=a.get("signed", 1), narrow=a.get("narrow", 0),
                        rounding_mode=a.get("rounding_mode", b"ROUND").decode()
                        if isinstance(a.get("rounding_mode", b"ROUND"), bytes) else a["rounding_mode"])
        if np.asarray(scale).size != 1:
            continue  # per-channel scales: not a binary-domain layer
        s = np.float32(np.asarray(scale).item())
        ints = np.round(deq.astype(np.float64) / float(s)).astype(np.int64)
        if not np.array_equal((s * ints.astype(np.float32)).astype(np.float32), deq.astype(np.float32)):
            raise BnnforgeError(f"node {node.name!r}: Quant weight is not exactly scale * integer")
        # torch layout [out, in]: MatMul weights are [in, out]; through a Transpose the
        # constant itself is already [out, in]; Gemm(transB=1) holds [out, in] too, and a
        # Conv weight is [out, in, k, k] as in torch.
        if node.op_type == "MatMul" and not transposed:
            ints = ints.T
        elif node.op_type == "Gemm" and not _attrs(node).get("transB", 0):
            ints = ints.T
        levels = np.unique(ints)
        if len(levels) > 2:
            raise BnnforgeError(f"node {node.name!r}: {len(levels)} weight levels, expected 2 ({{m, m+q}})")
        if len(levels) == 2:
            m, q_l = int(levels[0]), int(levels[1] - levels[0])
        else:
            if q_default is None:
                raise BnnforgeError(f"node {node.name!r}: one weight level only; pass q")
            m, q_l = int(levels[0]), int(q_default)
        if q_default is not None and q_l != q_default and len(levels) == 2:
            raise BnnforgeError(f"node {node.name!r}: level spacing {q_l} differs from q={q_default}")
        b = ((ints - m) // q_l).astype(np.uint8)
        assert np.array_equal(q_l * b.astype(np.int64) + m, ints)
        out.append({"node": node.name, "B": b, "m": m, "q": q_l, "scale": float(s),
                    "ones_fraction": float(b.mean())})
    return out
