"""Golden model: executes the streamlined and the hardware-layer graphs bit-exactly
with numpy, on packed bits for the binary layers (popcount of XNOR / AND).

Accumulator semantics (docs/hw_interfaces.md): acc = exact signed dot product of
{-1,+1} weights with the decoded inputs; threshold outputs are acc >= T.
"""
from __future__ import annotations

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from finn_flows.hwgraph import DOMAIN, attr_str, get_attrs, get_meta, initializer


def _popcount_rows(bits_packed: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits_packed).sum(axis=-1, dtype=np.int64)


def binary_dot(x: np.ndarray, w_pm1: np.ndarray, kind: str) -> np.ndarray:
    """x: [N, MW] decoded inputs; w_pm1: [MH, MW] in {-1,+1}. Returns [N, MH] int64."""
    mw = x.shape[1]
    wbits = np.packbits(w_pm1 > 0, axis=1)                      # [MH, B]
    if kind == "bipolar":
        xbits = np.packbits(x > 0, axis=1)                       # [N, B]; pads are 0 in both
        mismatches = _popcount_rows(xbits[:, None, :] ^ wbits[None, :, :])
        return mw - 2 * mismatches                               # = 2*popcount(xnor) - MW
    if kind == "unipolar":
        xbits = np.packbits(x > 0, axis=1)
        both = _popcount_rows(xbits[:, None, :] & wbits[None, :, :])
        ones = _popcount_rows(xbits)[:, None]                    # shared by every output
        return 2 * both - ones
    return x.astype(np.int64) @ w_pm1.astype(np.int64).T        # add/subtract accumulation


def _decode_input(x: np.ndarray, kind: str) -> np.ndarray:
    """Bits on the wire -> values: bipolar bit 0 means -1."""
    x = np.asarray(x, dtype=np.int64)
    if kind == "bipolar":
        if not np.all((x == 0) | (x == 1) | (x == -1)):
            raise BnnforgeError("bipolar input holds values other than {-1, +1} / {0, 1}")
        return np.where(x > 0, 1, -1)
    return x


def execute(model: onnx.ModelProto, x: np.ndarray, return_all: bool = False):
    """Run a streamlined or hardware graph on integer inputs x [N, MW0].

    Binary tensors travel as {0,1} bits (bipolar: 1 = +1). Returns the graph output
    ([N] labels with LabelSelect, else [N, MH] accumulators), or every tensor.
    """
    env = {model.graph.input[0].name: np.asarray(x, dtype=np.int64)}
    for node in model.graph.node:
        if node.domain != DOMAIN:
            raise BnnforgeError(f"node {node.name!r}: op {node.op_type} is not a bnnforge hardware/streamlined op")
        a = get_attrs(node)
        xin = env[node.input[0]]
        if node.op_type == "BinaryMatMul":
            w = initializer(model, node.input[1]).astype(np.int64)
            kind = attr_str(a["input_kind"])
            env[node.output[0]] = binary_dot(_decode_input(xin, kind), w, kind)
        elif node.op_type == "Threshold":
            t = initializer(model, node.input[1]).astype(np.int64)
            env[node.output[0]] = (xin >= t[None, :]).astype(np.int64)
        elif node.op_type == "MVTU":
            wbits = initializer(model, node.input[1]).astype(np.int64)
            kind = attr_str(a["input_kind"])
            acc = binary_dot(_decode_input(xin, kind), 2 * wbits - 1, kind)
            if attr_str(a["out_mode"]) == "threshold":
                t = initializer(model, node.input[2]).astype(np.int64)
                acc = (acc >= t[None, :]).astype(np.int64)
            env[node.output[0]] = acc
        elif node.op_type == "LabelSelect":
            env[node.output[0]] = np.argmax(xin, axis=1).astype(np.int64)  # first max wins
        else:
            raise BnnforgeError(f"node {node.name!r}: unknown op {node.op_type}")
    out = env[model.graph.output[0].name]
    return (out, env) if return_all else out


def quantize_inputs(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """Host-side input quantization: float images -> the integers the hardware takes,
    by executing the exported graph's own input-quantizer prefix with qonnx."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    hexed = get_meta(model, "host_prefix")
    spec = get_meta(model, "input")
    if hexed is None or spec is None:
        raise BnnforgeError("model has no host input-quantizer description (was it streamlined by bnnforge?)")
    from qonnx.transformation.infer_shapes import InferShapes

    prefix = ModelWrapper(onnx.load_from_string(bytes.fromhex(hexed))).transform(InferShapes())
    iname, oname = prefix.graph.input[0].name, prefix.graph.output[0].name
    images = np.asarray(images, dtype=np.float32)
    rows = []
    for i in range(len(images)):
        y = execute_onnx(prefix, {iname: images[i:i + 1]})[oname]
        rows.append(np.rint(y.reshape(1, -1) / spec["scale"]).astype(np.int64))
    q = np.concatenate(rows)
    if spec["kind"] in ("bipolar", "unipolar"):
        q = (q > 0).astype(np.int64)   # bits on the wire
    return q
