"""The residual join. In the QONNX graph: an Add of two activation streams quantized alike
(one shared quantizer: same kind, bits and scale; the Brevitas idiom of a shared
QuantIdentity/QuantReLU on the branch and the shortcut) is an exact integer add of their
levels; the float ops and the quantizer after it become thresholds on that integer sum.
Streamlined: StreamAdd + its Threshold | MultiThreshold. Hardware: StreamAdd
(hw/rtl/stream_add.v) and Thresholding (the requantizer of the integer sum, with
per-channel output flips). Both take the lanes of the branch they join (the add's first
input); the shortcut gets a width converter where its lanes differ. A float shortcut or
differently quantized inputs are refused naming the Add."""
from __future__ import annotations


import numpy as np
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, input_range
from . import ConvertContext, Operator, register
from ..sparse import invert_thresholds
from ..steps.streamline import _emit_activation, _multithresholds, _thresholds, _Wire
from .thresholding import thresholding_node


@register
class ResidualAdd(Operator):
    qonnx_join_ops = ("Add",)
    streamlined_ops = ("StreamAdd",)
    hw_ops = ("StreamAdd",)

    def recognise(self, node, dyn, state, shapes):
        return recognise_add(node, dyn, state, shapes)

    def emit_streamlined(self, model, item, index, in_names, nodes, inits) -> str:
        return emit_add(model, item, index, in_names, nodes, inits)

    def convert(self, ctx: ConvertContext, i: int) -> int:
        node = ctx.nodes[i]
        a = get_attrs(node)
        nxt = ctx.next_node(i)
        if nxt is None or nxt.op_type not in ("Threshold", "MultiThreshold") or nxt.input[0] != node.output[0]:
            raise BnnforgeError(f"node {node.name!r}: a residual add must be followed by its requantizer")
        kind = attr_str(a["input_kind"])
        eb = int(a["input_bits"]) if kind == "int" else 1
        c, pixels = int(a["channels"]), int(a["pixels"])
        src = attr_str(a.get("source_node", node.name))
        j = node.name.rsplit("_", 1)[-1]
        ctx.out_nodes.append(helper.make_node(
            "StreamAdd", list(node.input), list(node.output), name=f"StreamAdd_{j}", domain=DOMAIN,
            C=c, pixels=pixels, EB=eb, PE=1, input_kind=kind, source_node=src))
        ctx.out_nodes.append(thresholding_node(ctx.model, nxt, j, c, pixels, eb + 1, False, ctx.inits, src))
        return 2

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        from bnnforge.hw.hwgraph import set_attr
        from bnnforge.hw.stages import stream_out_format
        set_attr(node, "PE", stream_out_format(producers[node.input[0]])[0])

    def estimate(self, name: str, a: dict) -> dict:
        return add_estimate(name, a)


def add_estimate(name: str, a: dict) -> dict:
    """Residual add (stream_add): one (EB+1)-bit adder and output register per lane."""
    c, pe, eb = a["C"], a["PE"], a["EB"]
    return {"name": name, "kind": "add", "MW": c, "MH": c, "PE": pe, "SIMD": 0, "mode": "add",
            "acc_bits": eb + 1, "pixels": a["pixels"], "cycles": a["pixels"] * c // pe, "weight_bits": 0,
            "threshold_bits": 0, "est_luts": int(12 + pe * (eb + 1) * 1.5), "est_bram18": 0}


class AddItem:
    """A residual join: an Add of two streams quantized alike (one shared quantizer), so
    the sum of their integers is exact; the float ops and the quantizer after it become
    thresholds on that integer sum, as after a matrix product."""

    is_join = True

    def __init__(self, node, inputs, wire):
        self.operator = ResidualAdd()
        self.node = self.matmul = node   # .matmul: the node error messages name
        self.inputs = inputs
        self.wire = wire
        self.conv = wire.chw             # constants broadcast as NCHW on a feature map
        self.ops, self.act, self.act_bits, self.act_offset = [], None, 1, 0
        self.in_scale = wire.scale
        self.pool = None

    @property
    def channels(self) -> int:
        return self.wire.chw[0] if self.wire.chw is not None else self.flat

    def value_range(self) -> tuple[int, int]:
        lo, hi = input_range(self.wire.kind, self.wire.bits, self.wire.signed)
        lo, hi = lo - self.wire.offset, hi - self.wire.offset
        return 2 * lo, 2 * hi


def recognise_add(node, dyn, state, shapes):
    a, b = (state[i] for i in dyn)
    name = node.name
    for x in (a, b):
        if not isinstance(x, _Wire):
            raise BnnforgeError(
                f"node {name!r} (Add): one input is the float output of {x.matmul.name!r}, not a quantized "
                "stream; quantize both inputs of a residual Add with one shared activation quantizer (the "
                "Brevitas idiom: the same QuantIdentity/QuantReLU instance on the branch and the shortcut)")
    if not a.same_levels(b):
        raise BnnforgeError(
            f"node {name!r} (Add): its inputs are quantized differently ({a.describe()} vs {b.describe()}); "
            "the add is an integer add only when one shared quantizer (same scale, bits and sign) quantizes "
            "both; use the same activation quantizer instance on the branch and the shortcut")
    if a.chw != b.chw or (a.chw is None and shapes.get(dyn[0]) != shapes.get(dyn[1])):
        raise BnnforgeError(f"node {name!r} (Add): inputs of different shapes ({a.chw or shapes.get(dyn[0])} vs "
                            f"{b.chw or shapes.get(dyn[1])})")
    if a.offset:
        raise BnnforgeError(f"node {name!r} (Add): inputs are signed {a.bits}-bit activations, which the stream "
                            "carries as levels with an offset; use unsigned (or 1-bit) activations on a residual "
                            "join")
    add = AddItem(node, [a.source, b.source], a)
    shape = shapes.get(node.output[0])
    add.flat = int(np.prod(shape[1:])) if shape is not None else 0
    add.out_tensor = node.output[0]
    return add


def emit_add(model, add, j, in_names, nodes, inits) -> str:
    """StreamAdd of two streams quantized alike, then the requantizing thresholds.

    The wires carry integers S_a, S_b (levels, or bits) whose values are v = S - o
    (unsigned k-bit, offset o = 0; {0,1}) or v = 2S - 1 (bipolar). StreamAdd outputs the
    integer S = S_a + S_b, so the sum's value is v = S - 2o, or 2S - 2. The float ops and
    quantizer after the Add are evaluated on every value in range (as after a matrix
    product) and their thresholds moved onto S: v >= T  <=>  S >= ceil((T + base) / step).
    A channel whose output falls with the sum (a negative BatchNorm scale) keeps its
    input and inverts its output (out_flip: y = NT - level)."""
    wire = add.wire
    lo, hi = add.value_range()
    d_max = max(abs(lo), abs(hi))
    t, flip = (_multithresholds if add.act_bits > 1 else _thresholds)(add, d_max, model)
    t = invert_thresholds(t, flip)           # thresholds on the value, flipped channels inverted
    step, base = (2, 2) if wire.kind == "bipolar" else (1, 2 * wire.offset)
    s_max = 2 * (1 if wire.kind in ("bipolar", "unipolar") else (1 << wire.bits) - 1)
    t_s = -((-(t + base)) // step)            # ceil((T + base) / step)
    t_s = np.clip(t_s, 0, s_max + 1)          # outside [0, S_max] every value is on one side
    sum_name, out = f"add{j}_sum", f"add{j}_out"
    c = add.channels
    pixels = add.wire.chw[1] * add.wire.chw[2] if add.wire.chw is not None else 1
    nodes.append(helper.make_node("StreamAdd", list(in_names), [sum_name], name=f"StreamAdd_{j}", domain=DOMAIN,
                                  input_kind=wire.kind, input_bits=int(wire.bits), channels=int(c),
                                  pixels=int(pixels), source_node=add.node.name))
    inits.append(numpy_helper.from_array(t_s.astype(np.int64), f"add{j}_thresholds"))
    _emit_activation(add, sum_name, out, f"add{j}", f"_add{j}", 0, s_max, nodes, inits,
                     flip if flip.any() else None)
    return out
