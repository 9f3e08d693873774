"""Residual BNNs: ResNet-style stages for 28x28x1 (MNIST) and 32x32x3 inputs, built from the
Si-BNN block or FTBNN's block.

Network: input quantizer -> stem (3x3 binary conv, BatchNorm, activation) -> stages of
residual blocks -> head. Stage i is (width, blocks); every stage after the first halves the
map at its first block (stride 2). Head: flatten, or a global pool (a sum over the map whose
1/(H*W) sits in the positive output scale, so the classifier sums integers exactly), then a
{-1,+1} QuantLinear without bias and one positive per-tensor affine map (the argmax of the
integer accumulators is the prediction, as in the chain topologies).

Residual idiom (every model here follows it exactly; it is what makes the add an integer add):
  * both inputs of every Add are outputs of ONE Brevitas activation quantizer instance (same
    scale, zero point and bit width);
  * the shortcut is the identity, or, when the block changes the map size or the width, a
    strided 1x1 binary conv + BatchNorm quantized by that same shared quantizer;
  * the sum is requantized (k-bit or 1-bit) by the block's output quantizer before it is
    used further. That quantizer is the shared one of the next block when that block has
    an identity shortcut (its input already is that quantizer's output).

Activations: `act_bits` k in 1..8. k >= 2: unsigned k-bit with one learned power-of-two
per-tensor scale (models.methods.margin.KBitActQuant). k = 1: `binary_act` "unipolar"
({0,1}, Si-BNN's windowed ceil for the Si-BNN block) or "bipolar" ({-1,+1}).
Padding keeps the map size. The convs pad with zeros where 0 is an activation level ({0,1}
and unsigned k-bit streams, 4-/8-bit image inputs). A {-1,+1} stream has no 0, so there a
bipolar conv pads with -1 by an explicit Pad node (constant -1) in front of an unpadded
Conv: the value the hardware's 1-bit encoding gives a pad bit of 0.

Blocks:
  sibnn   conv3x3 -> BN -> (x - b) * s -> act, conv3x3 -> BN -> (x - b) * s -> shared quant;
          + shortcut; (x - b) * s -> output quant. Weights sign(w) * mean|w_c| per channel.
  ftbnn   conv3x3 -> BN -> shared quant; + shortcut; x - b -> FPReLU -> output quant
          (one conv per block, as in FTBNN's ResNet). Weights {-1,+1}. The FPReLU exports as
          one per-channel slope where that is exact in front of its quantizer (ResidualFPReLU).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from .errors import BnnforgeError
from .layers import ACTIVATIONS, ChannelThreshold, PositiveScalarAffine
from .methods.ftbnn import FPReLU
from .methods.margin import KBitActQuant
from .methods.sibnn import SiBNNActQuant, SiBNNThresholdScale
from .quantizers import BinaryWeightNoScale, BinaryWeightPerChannelScale, BipolarActQuant, UnipolarActQuant
from .topologies import TopologySpec, _input_quantizer

BLOCKS = ("sibnn", "ftbnn")
HEADS = ("flatten", "global_pool")
INPUT_QUANTS = ("binary", "uint4", "int8")
MAX_ACT_BITS = 8


@dataclass(frozen=True)
class ResidualSpec:
    """Shape and quantization of a residual net (see the module docstring)."""
    input_shape: tuple = (1, 28, 28)
    stem: int = 16
    stages: tuple = ((16, 1), (32, 1), (32, 1))   # (width, blocks) per stage
    block: str = "sibnn"
    act_bits: int = 1
    binary_act: str = "unipolar"
    input_quant: str = "binary"
    head: str = "flatten"
    num_classes: int = 10
    kind: str = "residual"

    @property
    def pad_value(self) -> float:
        """The pad value of the convs inside the net (0 or, on {-1,+1} streams, -1)."""
        return -1.0 if (self.act_bits == 1 and self.binary_act == "bipolar") else 0.0


def _int(field: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise BnnforgeError(f"residual net: {field} must be an integer in {rng}, got {value!r}")
    return value


def _choice(field: str, value, choices) -> str:
    if value not in choices:
        raise BnnforgeError(f"residual net: unknown {field} {value!r}; choices: {', '.join(choices)}")
    return value


def make_spec(input_shape=(1, 28, 28), stem: int = 16, stages=((16, 1), (32, 1), (32, 1)), block: str = "sibnn",
              act_bits: int = 1, binary_act: str = "unipolar", input_quant: str = "binary",
              head: str = "flatten", num_classes: int = 10) -> ResidualSpec:
    """A validated ResidualSpec (one-line BnnforgeError naming the field otherwise)."""
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise BnnforgeError(f"residual net: input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1 or shape[1] != shape[2]:
        raise BnnforgeError(f"residual net: input_shape must be (C, H, W) with positive sizes and H == W, "
                            f"got {input_shape!r}")
    if not isinstance(stages, (list, tuple)) or not stages:
        raise BnnforgeError(f"residual net: stages must be a non-empty list of [width, blocks], got {stages!r}")
    norm_stages = []
    for i, st in enumerate(stages):
        if not isinstance(st, (list, tuple)) or len(st) != 2:
            raise BnnforgeError(f"residual net: stages[{i}] must be [width, blocks], got {st!r}")
        norm_stages.append((_int(f"stages[{i}] width", st[0], 1), _int(f"stages[{i}] blocks", st[1], 1)))
    spec = ResidualSpec(
        input_shape=shape, stem=_int("stem", stem, 1), stages=tuple(norm_stages),
        block=_choice("block", block, BLOCKS), act_bits=_int("act_bits", act_bits, 1, MAX_ACT_BITS),
        binary_act=_choice("binary_act", binary_act, ACTIVATIONS),
        input_quant=_choice("input_quant", input_quant, INPUT_QUANTS), head=_choice("head", head, HEADS),
        num_classes=_int("num_classes", num_classes, 2))
    h = shape[1]
    for i in range(1, len(spec.stages)):
        if h < 2:
            raise BnnforgeError(f"residual net: stage {i} would halve a {h}x{h} map; use fewer stages")
        h = (h - 1) // 2 + 1
    return spec


# ---- quantizers and the modules in front of them ----------------------------------------

def stream_quantizer(spec: ResidualSpec, block: str) -> QuantIdentity:
    """One activation quantizer of the net (k-bit unsigned or 1-bit of the spec's kind).

    Per-tensor scale, so one instance applied to two tensors gives both the same scale."""
    if spec.act_bits > 1:
        act_quant = KBitActQuant.let(bit_width=spec.act_bits, max_val=2.0)
    elif spec.binary_act == "bipolar":
        act_quant = BipolarActQuant
    else:
        act_quant = SiBNNActQuant if block == "sibnn" else UnipolarActQuant
    return QuantIdentity(act_quant=act_quant, return_quant_tensor=False)


class ResidualFPReLU(FPReLU):
    """FPReLU followed by an unsigned k-bit quantizer (k >= 2), or by a 1-bit one.

    In front of an unsigned quantizer q (which clamps below at 0) f exports as x * s_c,
    exact for every x:  a > 0, b >= 0 -> s = a;  a <= 0, b >= 0 -> s = 0 (f <= 0);
    a <= 0, b < 0 -> s = b;  a > 0, b < 0 makes q(f(x)) a V shape, which no single slope
    (and no threshold set) expresses: export refuses it naming the channel.
    In front of a 1-bit quantizer it is FPReLU's own sign equivalent."""

    def __init__(self, channels: int, a_init: float = 1.0, b_init: float = 0.25, next_kind: str = "unsigned"):
        super().__init__(channels, a_init, b_init, next_kind=next_kind)

    @torch.no_grad()
    def clip_latent_(self) -> None:
        """Before a {0,1} or unsigned k-bit quantizer, a > 0 > b would make the activation
        V-shaped, which no threshold expresses (export refuses it): after every optimizer
        step b is projected back to 0 on the channels where a > 0."""
        if self.next_kind in ("unipolar", "unsigned"):
            self.b.copy_(torch.where(self.a > 0, self.b.clamp(min=0.0), self.b))

    @torch.no_grad()
    def sign_equivalent(self) -> torch.Tensor:
        if self.next_kind != "unsigned":
            return super().sign_equivalent()
        out = []
        for c, (a, b) in enumerate(zip(self.a.detach().cpu().tolist(), self.b.detach().cpu().tolist())):
            if b >= 0:
                out.append(a if a > 0 else 0.0)
            elif a <= 0:
                out.append(b)
            else:
                raise BnnforgeError(
                    f"FPReLU channel {c}: slopes a={a:g} > 0 and b={b:g} < 0 make the following unsigned "
                    "k-bit activation V-shaped in its input; no threshold set expresses it")
        return torch.tensor(out, dtype=self.a.dtype, device=self.a.device)


def _pre_quant(block: str, spec: ResidualSpec, channels: int, cfg: dict, with_fprelu: bool) -> list[nn.Module]:
    """The learned per-channel modules right in front of an activation quantizer."""
    if block == "sibnn":
        return [SiBNNThresholdScale(channels, cfg["threshold_init"], cfg["scale_init"])]
    if not with_fprelu:
        return []
    kind = "unsigned" if spec.act_bits > 1 else spec.binary_act
    return [ChannelThreshold(channels, init=cfg.get("threshold_init", 0.0)), ResidualFPReLU(channels, cfg["fprelu_a"], cfg["fprelu_b"], next_kind=kind)]


def _post_add_init(spec: ResidualSpec, cfg: dict) -> dict:
    """Initial threshold/scale of the 1-bit requantizer after an Add. The sum of two {0,1}
    values is 0, 1 or 2 ({-2, 0, 2} for {-1,+1}): starting at OR (1 when either input is 1)
    with every level inside the quantizer's backward window lets gradient reach both branches
    from the first step (at threshold 0 and scale 1 only the sum 0 would pass it)."""
    if spec.act_bits > 1:
        return cfg
    if spec.binary_act == "unipolar":   # y = (sum - 0.5) * 0.5 in {-0.25, 0.25, 0.75}
        return dict(cfg, threshold_init=0.5, scale_init=0.5)
    return dict(cfg, threshold_init=0.0, scale_init=0.4)   # y in {-0.8, 0, 0.8}; sign(0) = +1


def _binary_conv(block: str, in_c: int, out_c: int, kernel: int, stride: int, pad_value: float) -> list[nn.Module]:
    """A binary conv that keeps the map size (/ stride): zero padding where 0 is a level,
    an explicit Pad node with `pad_value` (-1 on {-1,+1} streams) otherwise."""
    wq = BinaryWeightPerChannelScale if block == "sibnn" else BinaryWeightNoScale
    pad = (kernel - 1) // 2
    if pad and pad_value != 0.0:
        return [nn.ConstantPad2d(pad, pad_value),
                QuantConv2d(in_c, out_c, kernel, stride=stride, padding=0, bias=False, weight_quant=wq)]
    return [QuantConv2d(in_c, out_c, kernel, stride=stride, padding=pad, bias=False, weight_quant=wq)]


# ---- blocks ---------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """main(x) + shortcut(x), both ending in `add_quant`, then `out_quant`.

    `add_quant` is the quantizer whose output x is (identity shortcut) or a new one
    (projection shortcut); `out_quant` is new and owned by this block."""

    def __init__(self, spec: ResidualSpec, in_c: int, out_c: int, stride: int, in_quant: QuantIdentity, cfg: dict):
        super().__init__()
        block = spec.block
        self.projection = stride != 1 or in_c != out_c
        self.add_quant = stream_quantizer(spec, block) if self.projection else in_quant
        if block == "sibnn":
            main = [*_binary_conv(block, in_c, out_c, 3, stride, spec.pad_value), nn.BatchNorm2d(out_c),
                    *_pre_quant(block, spec, out_c, cfg, False), stream_quantizer(spec, block),
                    *_binary_conv(block, out_c, out_c, 3, 1, spec.pad_value), nn.BatchNorm2d(out_c),
                    *_pre_quant(block, spec, out_c, cfg, False)]
        else:
            main = [*_binary_conv(block, in_c, out_c, 3, stride, spec.pad_value), nn.BatchNorm2d(out_c)]
        self.main = nn.Sequential(*main)
        self.shortcut = nn.Sequential(*_binary_conv(block, in_c, out_c, 1, stride, spec.pad_value),
                                      nn.BatchNorm2d(out_c)) if self.projection else None
        self.post_add = nn.Sequential(*_pre_quant(block, spec, out_c, _post_add_init(spec, cfg), True))
        self.out_quant = stream_quantizer(spec, block)

    def forward(self, x):
        main = self.add_quant(self.main(x))
        short = self.add_quant(self.shortcut(x)) if self.projection else x
        return self.out_quant(self.post_add(main + short))


class _GlobalSum(nn.Module):
    """Sum over the map (exported as ReduceSum): integer sums stay exact in float32."""

    def forward(self, x):
        return x.sum(dim=(2, 3))


class ResidualNet(nn.Module):
    """input quantizer -> stem -> residual stages -> head (see the module docstring)."""

    def __init__(self, spec: ResidualSpec, method: str | None = None, config: dict | None = None):
        super().__init__()
        cfg = dict(METHOD_DEFAULTS, **(config or {}))
        self.spec, self.method = spec, method or f"{spec.block}_resnet"
        shape = {k: getattr(spec, k) for k in SHAPE_KEYS}
        self.config = dict(cfg, **dict(shape, stages=[list(s) for s in spec.stages]))
        self.latent_clip = 1.0
        c, h, _ = spec.input_shape
        in_quant = _input_quantizer(TopologySpec("cnv", spec.input_shape, (), input_quant=spec.input_quant),
                                    "bipolar" if spec.binary_act == "bipolar" else "unipolar")
        stem_quant = stream_quantizer(spec, spec.block)
        # An int8 or 4-bit image has the level 0; a 1-bit image pads like the stream of its kind.
        stem_pad = spec.pad_value if spec.input_quant == "binary" and spec.binary_act == "bipolar" else 0.0
        self.stem = nn.Sequential(in_quant, *_binary_conv(spec.block, c, spec.stem, 3, 1, stem_pad),
                                  nn.BatchNorm2d(spec.stem), *_pre_quant(spec.block, spec, spec.stem, cfg, True),
                                  stem_quant)
        blocks, quant, in_c = [], stem_quant, spec.stem
        for i, (width, n) in enumerate(spec.stages):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blk = ResidualBlock(spec, in_c, width, stride, quant, cfg)
                blocks.append(blk)
                quant, in_c = blk.out_quant, width
                if stride == 2:
                    h = (h - 1) // 2 + 1
        self.blocks = nn.Sequential(*blocks)
        if spec.head == "global_pool":
            fan_in, pool, init = in_c, _GlobalSum(), (in_c ** -0.5) / (h * h)
        else:
            fan_in, pool, init = in_c * h * h, nn.Flatten(), (in_c * h * h) ** -0.5
        self.head = nn.Sequential(pool, QuantLinear(fan_in, spec.num_classes, bias=False,
                                                    weight_quant=BinaryWeightNoScale),
                                  PositiveScalarAffine(init_scale=init))
        self.output_map = (in_c, h, h)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))

    # ---- the training hooks of models.methods (common.MethodNet) -------------------------
    @torch.no_grad()
    def clip_latent_weights(self):
        for m in self.modules():
            if isinstance(m, (QuantLinear, QuantConv2d)):
                m.weight.clamp_(-self.latent_clip, self.latent_clip)
            elif m is not self and hasattr(m, "clip_latent_"):
                m.clip_latent_()

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        pass

    def regularization(self, ce: torch.Tensor) -> torch.Tensor:
        return ce.new_zeros(())

    def meta(self) -> dict:
        return {"topology": "residual", "method": self.method, "input_shape": list(self.spec.input_shape),
                "num_classes": self.spec.num_classes,
                "stages": [list(s) for s in self.spec.stages], "stem": self.spec.stem, "block": self.spec.block,
                "act_bits": self.spec.act_bits, "binary_act": self.spec.binary_act,
                "input_quant": self.spec.input_quant, "head": self.spec.head}


# Method parameters of the blocks (Si-BNN's and FTBNN's defaults, models.methods).
METHOD_DEFAULTS = {"threshold_init": 0.0, "scale_init": 1.0, "fprelu_a": 1.0, "fprelu_b": 0.25}
SHAPE_KEYS = ("stem", "stages", "block", "act_bits", "binary_act", "input_quant", "head")


def build_residual_model(input_shape=(1, 28, 28), num_classes: int = 10, method: str | None = None,
                         **params) -> ResidualNet:
    """A ResidualNet from shape keys (SHAPE_KEYS) and block parameters (METHOD_DEFAULTS)."""
    unknown = set(params) - set(SHAPE_KEYS) - set(METHOD_DEFAULTS)
    if unknown:
        raise BnnforgeError(f"residual net: unknown parameter(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(SHAPE_KEYS + tuple(METHOD_DEFAULTS))}")
    spec = make_spec(input_shape=input_shape, num_classes=num_classes,
                     **{k: params[k] for k in SHAPE_KEYS if k in params})
    cfg = {k: params[k] for k in METHOD_DEFAULTS if k in params}
    for k, v in cfg.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BnnforgeError(f"residual net: {k} must be a number, got {v!r}")
    if cfg.get("scale_init", 1.0) <= 0:
        raise BnnforgeError(f"residual net: scale_init must be positive, got {cfg['scale_init']!r}")
    return ResidualNet(spec, method=method, config=cfg)


def parameter_counts(model: nn.Module) -> dict:
    """Binary weights (entries of the binary-weight layers; of a block-diagonal layer only
    its blocks) and all trainable parameters."""
    binary = 0
    for m in model.modules():
        if isinstance(m, (QuantConv2d, QuantLinear)):
            binary += m.weight.numel()
        elif isinstance(getattr(m, "latent_weight", None), torch.Tensor):
            mask = getattr(m, "mask", None)
            binary += int(mask.count_nonzero()) if isinstance(mask, torch.Tensor) else m.latent_weight.numel()
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"binary_weights": int(binary), "trainable": int(total)}


# ---- the idiom in an exported graph -----------------------------------------------------

_QUANT_OPS = ("Quant", "BipolarQuant")
_ELEMENTWISE = ("Sub", "Mul", "Add", "Div")


def residual_adds(model) -> list[dict]:
    """Every Add of two computed tensors in an exported QONNX graph (path or ModelProto;
    read after qonnx's cleanup, which folds constants), checked against the residual idiom: both inputs straight from Quant/BipolarQuant nodes
    with equal scale, zero point, bit width and attributes, and the sum requantized (through
    per-channel constant Sub/Mul/Add only) before any other use. Returns one dict per Add
    (name, the two quantizer nodes, scale, bit width, the requantizing node); raises
    BnnforgeError naming the Add otherwise."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    proto = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    # folded constants (exp(log_scale), ...) become initializers, as the compiler sees them
    g = cleanup_model(ModelWrapper(proto)).model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def attrs(n):
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    found = []
    for node in g.node:
        if node.op_type != "Add" or any(i in inits for i in node.input):
            continue
        where = f"Add node {node.name!r}"
        quants = [producer.get(i) for i in node.input]
        if any(q is None or q.op_type not in _QUANT_OPS for q in quants):
            kinds = [q.op_type if q is not None else "graph input" for q in quants]
            raise BnnforgeError(f"{where}: inputs come from {kinds}, not from activation quantizers")
        a, b = quants
        params_a = [inits.get(i) for i in a.input[1:]]
        params_b = [inits.get(i) for i in b.input[1:]]
        if a.op_type != b.op_type or attrs(a) != attrs(b) or any(p is None for p in params_a + params_b) \
                or not all(np.array_equal(p, q) for p, q in zip(params_a, params_b)):
            raise BnnforgeError(f"{where}: its inputs {a.name!r} and {b.name!r} are quantized differently "
                                "(scale, zero point, bit width or attributes)")
        tensor, requant = node.output[0], None
        while requant is None:
            users = consumers.get(tensor, [])
            if tensor in outputs or len(users) != 1:
                raise BnnforgeError(f"{where}: the sum is used before it is requantized")
            user = users[0]
            if user.op_type in _QUANT_OPS:
                requant = user
            elif user.op_type in _ELEMENTWISE and sum(i not in inits for i in user.input) == 1:
                tensor = user.output[0]
            else:
                raise BnnforgeError(f"{where}: the sum reaches {user.op_type} node {user.name!r} "
                                    "before it is requantized")
        bits = 1 if a.op_type == "BipolarQuant" else int(np.asarray(params_a[2]).item())
        found.append({"add": node.name, "quant": (a.name, b.name), "scale": np.asarray(params_a[0]).tolist(),
                      "bit_width": bits, "requant": requant.name})
    return found
