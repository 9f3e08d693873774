"""step_tidy_up: qonnx cleanup, shapes and datatypes, Gemm to MatMul (with or without
bias: both Brevitas exporters), weight quantizers folded.

After this step every MatMul weight is a constant initializer holding exactly
{-1,+1}, and any per-output-channel weight scale is an explicit Mul after the
MatMul (or Conv), where streamlining folds it into the thresholds. Exception: a
multi-bit Quant weight that is exactly an integer grid of one of the sparse forms
(finn_flows/sparse.py: two levels {m, m+q} of the binary domain, or {-1, 0, +1} of
grouped layers) keeps those integers (divided by their gcd) and gets the scale as the Mul;
so does any other signed 2..4-bit integer grid (finn_flows/kbit.py: the k-bit weight unit).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from bnnforge.errors import BnnforgeError, model_error
from bnnforge.hw.hwgraph import set_initializer

from ..transforms.gemm_without_bias import gemm_without_bias_to_matmul


QONNX_CANNOT_EVALUATE = "qonnx cannot evaluate the model here"


def step_tidy_up(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    wrapper = ModelWrapper(model)
    _check_batch_one(wrapper.model)
    try:
        wrapper = cleanup_model(wrapper)
        wrapper = ModelWrapper(gemm_without_bias_to_matmul(wrapper.model))
        wrapper = wrapper.transform(GemmToMatMul())
        wrapper = cleanup_model(wrapper)
    except (BnnforgeError, onnx.shape_inference.InferenceError):
        raise  # the builder names contradicting shapes itself
    except Exception as e:
        # qonnx's cleanup executes every constant subgraph: a node it cannot evaluate (an op
        # in its domain it does not know, an attribute out of range, shapes that do not
        # broadcast) is a property of this model, reported with the node qonnx was at
        raise model_error(e, QONNX_CANNOT_EVALUATE) from None
    return fold_weight_quantizers(wrapper.model)


def _check_batch_one(model: onnx.ModelProto) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value not in (1,):
        raise BnnforgeError(
            f"graph input {model.graph.input[0].name!r}: batch size {dims[0].dim_value}; "
            "export with batch 1 (input_shape=(1, ...))")


def _quant_output(node: onnx.NodeProto, model: onnx.ModelProto) -> np.ndarray:
    """Evaluate a weight quantizer on its constant inputs with qonnx's own op code."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant
    from bnnforge.hw.hwgraph import get_attrs, initializer

    args = [initializer(model, name) for name in node.input]
    if node.op_type == "BipolarQuant":
        return binary_quant(*args)
    a = get_attrs(node)
    return int_quant(*args, signed=a.get("signed", 1), narrow=a.get("narrow", 0),
                 rounding_mode=a.get("rounding_mode", b"ROUND").decode())


def fold_weight_quantizers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace Quant/BipolarQuant on constant weights by {-1,+1} weights and a Mul."""
    consts = {t.name for t in model.graph.initializer}
    new_nodes = []
    producers = {}
    for node in model.graph.node:
        if node.op_type in ("Quant", "BipolarQuant") and all(i in consts for i in node.input):
            producers[node.output[0]] = node
        else:
            new_nodes.append(node)
    out_nodes = []
    for node in new_nodes:
        if node.op_type in ("MatMul", "Conv") and len(node.input) > 1 and node.input[1] in producers:
            qnode = producers.pop(node.input[1])
            try:
                w = np.asarray(_quant_output(qnode, model), dtype=np.float64)
            except Exception as e:
                raise model_error(e, QONNX_CANNOT_EVALUATE) from None
            signs, scale = _split_weights(w, node, qnode, model, channel_axis=1 if node.op_type == "MatMul" else 0)
            set_initializer(model, node.input[1], signs.astype(np.float32))
            out_nodes.append(node)
            if not np.all(scale == 1.0):
                scaled = node.output[0]
                node.output[0] = f"{scaled}_unscaled"
                shape = (1, -1) if node.op_type == "MatMul" else (1, -1, 1, 1)
                set_initializer(model, f"{node.name}_weight_scale", scale.reshape(shape).astype(np.float32))
                out_nodes.append(helper.make_node(
                    "Mul", [node.output[0], f"{node.name}_weight_scale"], [scaled],
                    name=f"{node.name}_weight_scale_mul"))
        else:
            out_nodes.append(node)
    if producers:
        name = next(iter(producers.values())).name
        raise BnnforgeError(f"node {name!r}: quantized constant not consumed by a MatMul/Conv weight input")
    del model.graph.node[:]
    model.graph.node.extend(out_nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def _split_weights(w: np.ndarray, node: onnx.NodeProto, qnode: onnx.NodeProto, model: onnx.ModelProto,
                   channel_axis: int):
    """{-1,+1} weights times a per-channel scale. A MatMul or Conv weight from a multi-bit Quant
    is first tried as the exact integer grid of a sparse form (finn_flows.sparse): two
    levels {m, m+q} (binary domain, even a symmetric one; a signed quantizer exactly as
    wide as its levels need) or ternary {-1,0,+1} (grouped layers; the signed narrow 2-bit
    grid), times a scale; such layers are listed in the `bnnforge.sparse_weights`
    metadata, so streamlining gives them the sparse unit."""
    if node.op_type in ("MatMul", "Conv") and qnode.op_type == "Quant" and len(qnode.input) > 3:
        from bnnforge.hw.hwgraph import get_attrs, get_meta, initializer, set_meta
        from ..sparse import split_weights

        bits = np.asarray(initializer(model, qnode.input[3]), dtype=np.float64)
        zp = np.asarray(initializer(model, qnode.input[2]), dtype=np.float64)
        if bits.size == 1 and float(bits.reshape(-1)[0]) > 1 and not np.any(zp != 0):
            qa = get_attrs(qnode)
            got = split_weights(w, initializer(model, qnode.input[1]), node.name, channel_axis,
                                bits=int(bits.reshape(-1)[0]), signed=bool(qa.get("signed", 1)),
                                narrow=bool(qa.get("narrow", 0)))
            if got is not None:
                set_meta(model, "sparse_weights", sorted(set(get_meta(model, "sparse_weights", [])) | {node.name}))
                return got
            from ..kbit import META_KEY, split_kbit_weights
            got = split_kbit_weights(w, initializer(model, qnode.input[1]), channel_axis,
                                     bits=int(bits.reshape(-1)[0]), signed=bool(qa.get("signed", 1)))
            if got is not None:  # a k-bit integer grid: the k-bit weight unit (finn_flows/kbit.py)
                set_meta(model, META_KEY, sorted(set(get_meta(model, META_KEY, [])) | {node.name}))
                return got
            try:
                return _split_binary(w, node, channel_axis)
            except BnnforgeError as e:
                raise BnnforgeError(f"{e}, or an integer grid of the sparse forms (two levels {{m, m+q}}, or "
                                    "{-1, 0, +1} with zero blocks), or of a signed 2..4-bit quantizer") from None
    return _split_binary(w, node, channel_axis)


def _split_binary(w: np.ndarray, node: onnx.NodeProto, channel_axis: int):
    """w = signs * scale with signs in {-1,+1} and one positive scale per output channel."""
    moved = np.moveaxis(w, channel_axis, 0).reshape(w.shape[channel_axis], -1)
    scale = np.abs(moved).max(axis=1)
    if np.any(scale == 0) or not np.all(np.abs(moved) == scale[:, None]):
        n_levels = len(np.unique(np.abs(moved)))
        raise BnnforgeError(
            f"node {node.name!r} ({node.op_type}): weights are not binary "
            f"({n_levels} distinct magnitudes per output channel); the flow needs 1-bit weights")
    signs = np.sign(w)
    return signs, scale
