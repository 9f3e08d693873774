"""Golden model: executes the streamlined and the hardware-layer graphs bit-exactly
with numpy, on packed bits for the binary layers (popcount of XNOR / AND).

Each operator kind computes in its own module of sim/golden_ops/ (found by scanning
that package), from the node and its initializers alone; this file holds the shared
arithmetic (dot products, decoding, windows, thresholds) and the graph walk.

Accumulator semantics (docs/hw_interfaces.md): acc = exact signed dot product of
{-1,+1} weights with the decoded inputs; threshold outputs are acc >= T, multi-threshold
outputs (k-bit activations) #{t : acc >= T[o, t]}.
"""
from __future__ import annotations

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, get_meta, initializer
from bnnforge.sim.golden_ops import GoldenContext, golden_op

# Test-only fault injection: proves that the differential fuzzer finds, shrinks and
# replays a golden-model bug (tests/flows/test_fuzz.py). Never set outside those tests.
FAULT_ENV = "BNNFORGE_TEST_INJECT_FAULT"
FAULTS = ("mvtu_threshold_strict",)   # MVTU threshold compare acc > T instead of acc >= T


def injected_fault() -> str | None:
    import os

    name = os.environ.get(FAULT_ENV) or None
    if name is not None and name not in FAULTS:
        raise BnnforgeError(f"{FAULT_ENV}={name!r}: unknown test fault; choices: {', '.join(FAULTS)}")
    return name


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


def _decode_input(x: np.ndarray, kind: str, offset: int = 0) -> np.ndarray:
    """Bits on the wire -> values: bipolar bit 0 means -1; k-bit levels after a signed
    activation stand for level - offset."""
    x = np.asarray(x, dtype=np.int64)
    if kind == "bipolar":
        if not np.all((x == 0) | (x == 1) | (x == -1)):
            raise BnnforgeError("bipolar input holds values other than {-1, +1} / {0, 1}")
        return np.where(x > 0, 1, -1)
    return x - offset


def im2col_nhwc(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """x [N, H, W, C] -> [N, OH, OW, K*K*C], window elements in (ky, kx, c) order,
    zero padding (the pad element is the value 0, i.e. bit 0 on the wire)."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, w, c = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # [N, H-k+1, W-k+1, C, k, k]
    win = win[:, ::stride, ::stride][:, :oh, :ow]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, oh, ow, k * k * c)


def maxpool_nhwc(x: np.ndarray, p: int) -> np.ndarray:
    """Non-overlapping p x p max pool of x [N, H, W, C] (H, W multiples of p)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))


def _rows(x: np.ndarray, n: int, mw: int) -> tuple[np.ndarray, tuple]:
    """Any [N, ..., MW]-sized tensor as [N * pixels, MW] rows, and the [N, ...] shape to restore."""
    if x.size % (n * mw):
        raise BnnforgeError(f"tensor of shape {x.shape} does not split into vectors of {mw} elements")
    lead = x.reshape(n, -1, mw).shape[:2]
    return x.reshape(-1, mw), lead


def _spatial(x: np.ndarray, n: int, dim: int, c: int) -> np.ndarray:
    if x.size != n * dim * dim * c:
        raise BnnforgeError(f"tensor of shape {x.shape} is not a {dim}x{dim}x{c} feature map per input")
    return x.reshape(n, dim, dim, c)


def _multithreshold(acc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """k-bit levels #{j : acc >= T[o, j]} of accumulators [..., MH] (sim.golden_ext reference)."""
    from bnnforge.sim.golden_ext import multithreshold

    acc = np.asarray(acc, dtype=np.int64)
    if t.ndim != 2 or t.shape[0] != acc.shape[-1]:
        raise BnnforgeError(f"multi-thresholds of shape {t.shape} do not match {acc.shape[-1]} outputs")
    return multithreshold(acc.reshape(-1, acc.shape[-1]), t).reshape(acc.shape)


def _unflatten(y: np.ndarray, lead: tuple) -> np.ndarray:
    """[N*P, M] -> [N, M] when P == 1 (fully connected), else [N, P, M]."""
    n, p = lead
    return y.reshape(n, -1) if p == 1 else y.reshape(n, p, -1)


def execute(model: onnx.ModelProto, x: np.ndarray, return_all: bool = False):
    """Run a streamlined or hardware graph on integer inputs x [N, ...] (flat [N, MW0]
    or channels-last [N, H, W, C]; flat inputs are reshaped as each node needs).

    Binary tensors travel as {0,1} bits (bipolar: 1 = +1). Returns the graph output
    ([N] labels with LabelSelect, else [N, MH] accumulators), or every tensor.
    """
    x = np.asarray(x, dtype=np.int64)
    n = x.shape[0]
    ctx = GoldenContext(model, n, injected_fault())
    env = {model.graph.input[0].name: x}
    consts = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.domain != DOMAIN:
            raise BnnforgeError(f"node {node.name!r}: op {node.op_type} is not a bnnforge hardware/streamlined op")
        compute = golden_op(node.op_type, node.name)
        inputs = []
        for i in node.input:
            if i and i not in consts:
                if i not in env:
                    raise BnnforgeError(f"node {node.name!r}: input {i!r} is computed by no earlier node")
                inputs.append(env[i])
        outs = compute(ctx, node, get_attrs(node), inputs)
        for name, value in zip(node.output, outs if isinstance(outs, list) else [outs]):
            env[name] = value
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
        if spec.get("nchw") and y.ndim == 4:
            y = y.transpose(0, 2, 3, 1)  # the hardware streams channels-last
        # (a model that flattens before its input quantizer already hands over its own order)
        rows.append(np.rint(y.reshape(1, -1) / spec["scale"]).astype(np.int64))
    q = np.concatenate(rows)
    if spec["kind"] in ("bipolar", "unipolar"):
        q = (q > 0).astype(np.int64)   # bits on the wire
    return q


def _out_flip(model: onnx.ModelProto, node: onnx.NodeProto, k: int, y: np.ndarray, nt: int) -> np.ndarray:
    """Optional input k of a threshold op: per-output inversion (OUT_FLIP of mvtu_sparse),
    y -> NT - y on flipped channels (1-bit: not y)."""
    if len(node.input) <= k or not node.input[k]:
        return y
    flip = initializer(model, node.input[k]).astype(np.int64).reshape(-1)
    if flip.shape[0] != y.shape[-1] or not np.all((flip == 0) | (flip == 1)):
        raise BnnforgeError(f"node {node.name!r}: output flips must be {y.shape[-1]} bits")
    return np.where(flip.astype(bool), nt - y, y)


def _sparse_matrix(model: onnx.ModelProto, node: onnx.NodeProto, a: dict) -> np.ndarray:
    """The integer matrix of a SparseMatMul / MVTUSparse, read here from the node alone
    (not through the compiler's helpers, so that the golden model stays an independent
    reference): sparse01 stores B with W = m + q*B, pm1_blocks stores W in {-1,0,+1}."""
    kind = attr_str(a["weight_kind"])
    stored = initializer(model, node.input[1]).astype(np.int64)
    if kind == "sparse01":
        if not np.all((stored == 0) | (stored == 1)):
            raise BnnforgeError(f"node {node.name!r}: sparse01 bit matrix holds values other than 0/1")
        return int(a["m"]) + int(a["q"]) * stored
    if kind == "pm1_blocks":
        if not np.all((stored >= -1) & (stored <= 1)):
            raise BnnforgeError(f"node {node.name!r}: pm1_blocks weights hold values other than -1, 0, +1")
        return stored
    raise BnnforgeError(f"node {node.name!r}: unknown sparse weight kind {kind!r}")


def _sparse_layer(model: onnx.ModelProto, node: onnx.NodeProto, a: dict, xin: np.ndarray, n: int) -> np.ndarray:
    """SparseMatMul (streamlined: the accumulator) and MVTUSparse (hardware: with its
    output stage) as the exact integer product of the layer's matrix, W = m + q*B
    (sparse01) or W in {-1,0,+1} (pm1_blocks) (sim.golden_ext.sparse_dot)."""
    from bnnforge.sim.golden_ext import sparse_dot

    w = _sparse_matrix(model, node, a)
    kind = attr_str(a["input_kind"])
    rows, lead = _rows(xin, n, w.shape[1])
    acc = sparse_dot(_decode_input(rows, kind), w)
    if node.op_type == "MVTUSparse":
        mode = attr_str(a["out_mode"])
        if mode in ("threshold", "multithreshold"):
            t = initializer(model, node.input[2]).astype(np.int64)
            if mode == "threshold":
                acc = _out_flip(model, node, 3, (acc >= t[None, :]).astype(np.int64), 1)
            else:
                acc = _out_flip(model, node, 3, _multithreshold(acc, t), t.shape[1])
    return _unflatten(acc, lead)
