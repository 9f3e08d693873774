"""k-bit weight layers in the flow (FINN's W2A2 and up to 4-bit weights), compiled into
`mvtu_kbit` (docs/hw_interfaces.md, "k-bit weight unit").

tidy-up: a MatMul/Conv weight from a Brevitas Int weight quantizer (Quant, signed,
zero point 0, 2..4 bits, per-tensor or per-output-channel scale) that is neither {-1,+1}
nor one of the sparse forms (finn_flows/sparse.py) keeps its integers and gets the scale
as a Mul behind the MatMul, where streamlining folds it into the thresholds like every
other scale; the layer is listed in the `bnnforge.kbit_weights` metadata.

streamline: such a layer, and a ternary {-1,0,+1} layer whose zeros do not form
the whole-group blocks of a grouped layer (FINN's W2A2 zoo models: a narrow 2-bit
quantizer, zeros scattered), and any multi-level layer after a signed k-bit activation
(mvtu_sparse takes no input offset), become KbitMatMul(x, W) (W int8, attribute
weight_bits). convert_to_hw: KbitMatMul (+ Threshold | MultiThreshold) ->
MVTUKbit_<layer>, numbered and folded like MVTU (folding keys MVTUKbit_<i>).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, signed_bits_for
from bnnforge.hw.memfiles_kbit import MAX_WEIGHT_BITS, MIN_WEIGHT_BITS, weight_bits_for

META_KEY = "kbit_weights"


def split_kbit_weights(w: np.ndarray, quant_scale, channel_axis: int, bits: int, signed: bool):
    """w = ints * scale[channel] for a signed `bits`-bit quantizer's output `w` (2..4
    bits, one positive scale per output channel or one for all). Returns (ints as float,
    per-channel scale), or None when `w` is not such a grid."""
    if not signed or not MIN_WEIGHT_BITS <= bits <= MAX_WEIGHT_BITS:
        return None
    w = np.asarray(w, dtype=np.float64)
    s = np.broadcast_to(np.asarray(quant_scale, dtype=np.float64), w.shape)
    moved = np.moveaxis(s, channel_axis, 0).reshape(w.shape[channel_axis], -1)
    if np.any(moved <= 0) or not np.all(moved == moved[:, :1]):
        return None  # a scale that varies along the input axis, or not positive
    ints = np.round(w / s)
    if not np.array_equal((ints * s).astype(np.float32), w.astype(np.float32)):
        return None
    if ints.size and (ints.min() < -(1 << (bits - 1)) or ints.max() > (1 << (bits - 1)) - 1):
        return None
    return ints, moved[:, 0]


def zero_blocks_structured(w_int: np.ndarray) -> bool:
    """Whether the zeros of a {-1,0,+1} matrix are those of a grouped / block-diagonal
    layer: the rows' non-zero column sets are, pairwise, equal or disjoint (each group
    of rows reads its own columns, all of them). Scattered zeros (a ternary quantizer's
    dense weights) are not: their rows' supports overlap without being equal."""
    nz = np.asarray(w_int) != 0
    supports = {r.tobytes(): r for r in nz if r.any()}
    seen = np.zeros(nz.shape[1], dtype=bool)
    for r in supports.values():
        if np.any(seen & r):
            return False
        seen |= r
    return True


def use_kbit(layer_name: str, kbit_names, wkind: str, w_int: np.ndarray, in_offset: int) -> bool:
    """Whether a multi-level layer gets the k-bit unit (see the module docstring)."""
    if wkind == "binary":
        return False
    if layer_name in kbit_names or in_offset:
        return True
    return wkind == "pm1_blocks" and not zero_blocks_structured(w_int)


def kbit_conv_matrix(w: np.ndarray, conv: dict, name: str) -> np.ndarray:
    """The lowered conv's integer matrix [OC, K*K*C] in the sliding window's (ky, kx, c)
    order; a grouped conv's rows are 0 outside their group's channels."""
    oc, cg, k, _ = w.shape
    g, c = conv["group"], conv["channels"]
    if cg * g != c or oc % g:
        raise BnnforgeError(f"node {name!r} (Conv): weights {list(w.shape)} do not match group={g} over "
                            f"{c} input channels")
    full = np.zeros((oc, c, k, k), dtype=np.float64)
    og = oc // g
    for j in range(g):
        full[j * og:(j + 1) * og, j * cg:(j + 1) * cg] = w[j * og:(j + 1) * og]
    if not np.array_equal(full, np.round(full)):
        raise BnnforgeError(f"node {name!r} (Conv): weights are not integers after tidy-up")
    return full.transpose(0, 2, 3, 1).reshape(oc, -1).astype(np.int64)


def checked_weight_bits(w_int: np.ndarray, name: str) -> int:
    """The weight width of a k-bit layer's final matrix (row flips of a negative scale
    included: -(-2^(B-1)) needs one more bit), refused beyond what mvtu_kbit holds."""
    b = weight_bits_for(w_int)
    if b > MAX_WEIGHT_BITS:
        lo, hi = int(np.min(w_int)), int(np.max(w_int))
        raise BnnforgeError(
            f"node {name!r}: weights in [{lo}, {hi}] need {b} signed bits (a negative scale negates a row, "
            f"and -(-2^(B-1)) needs one more bit); the k-bit unit takes {MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS}")
    return b


def kbit_to_hw(model: onnx.ModelProto, nodes: list, i: int, layer: int, out_nodes: list, inits: dict,
               pixels: int = 1) -> int:
    """KbitMatMul (+ Threshold | MultiThreshold) -> MVTUKbit_<layer> (hw/rtl/mvtu_kbit.v).
    Returns the number of nodes consumed. Attributes as MVTU's plus weight_bits; the
    weight initializer keeps the signed integers; ACC_BITS holds [-R-1, R+1] with
    R = max_o sum_i |W[o,i]| * max|x - offset| (thresholds reach R + 1)."""
    from .operators.mvtu import MODE_OF_KIND, fuse_thresholds as _fuse_thresholds

    node = nodes[i]
    a = get_attrs(node)
    kind = attr_str(a["input_kind"])
    w = initializer(model, node.input[1]).astype(np.int64)
    mh, mw = w.shape
    offset = int(a.get("input_offset", 0))
    lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
    r = int(np.abs(w).sum(axis=1).max(initial=0)) * max(abs(lo - offset), abs(hi - offset))
    acc_bits = signed_bits_for(-r - 1, r + 1)
    if acc_bits > 32:
        raise BnnforgeError(f"node {node.name!r}: accumulator range +-{r} needs {acc_bits} bits; "
                            "mvtu_kbit holds at most 32")
    wname = f"mvtu{layer}_weights"
    inits[wname] = numpy_helper.from_array(w.astype(np.int8), wname)
    ins = [node.input[0], wname]
    attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                 input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]), acc_bits=acc_bits,
                 pixels=pixels, weight_bits=int(a["weight_bits"]),
                 source_node=attr_str(a.get("source_node", node.name)))
    if offset:
        attrs["input_offset"] = offset
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if nxt is not None and nxt.op_type in ("Threshold", "MultiThreshold") and nxt.input[0] == node.output[0]:
        if len(nxt.input) > 2 and nxt.input[2]:
            raise BnnforgeError(f"node {nxt.name!r}: output flips after a k-bit weight layer are not "
                                "supported (its rows are negated instead)")
        _fuse_thresholds(model, nxt, layer, mh, inits, ins, attrs)
        out, used = nxt.output[0], 2
    else:
        attrs.update(out_mode="accumulator", output_kind="int")
        out, used = node.output[0], 1
    out_nodes.append(helper.make_node("MVTUKbit", ins, [out], name=f"MVTUKbit_{layer}", domain=DOMAIN, **attrs))
    return used
