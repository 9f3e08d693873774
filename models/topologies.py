"""BNN topologies: TFC, SFC, LFC (784 inputs), CNV and a small MLP for 8x8 digits.

Every topology takes images in [0, 1] (NCHW) and is built with either activation
kind. Layer pattern (BNN-PYNQ style): binary-weight layer -> BatchNorm -> 1-bit
activation; the last layer is followed by a positive per-tensor affine map only,
so the argmax of its integer accumulators is the network's prediction.
"""
from dataclasses import dataclass

import torch
from torch import nn
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from .errors import BnnforgeError
from .layers import ACTIVATIONS, ChannelThreshold, PositiveScalarAffine, binary_activation
from .quantizers import (
    BinaryWeightNoScale,
    BinaryWeightPerChannelScale,
    BipolarActQuant,
    Int8InputQuant,
    Uint4InputQuant,
    UnipolarActQuant,
)

WEIGHT_SCALINGS = {"none": BinaryWeightNoScale, "per_channel": BinaryWeightPerChannelScale}


@dataclass(frozen=True)
class TopologySpec:
    kind: str                 # "fc" or "cnv"
    input_shape: tuple        # (C, H, W)
    hidden: tuple             # FC widths (fc) / conv channels (cnv)
    fc_hidden: tuple = ()     # FC widths after the convs (cnv only)
    input_quant: str = "binary"  # "binary" (1-bit, same kind as the activations), "uint4", "int8"
    num_classes: int = 10
    description: str = ""
    pool_after: tuple = (1, 3)  # cnv: 2x2 max pool after these conv indices
    conv_pad: int = 0           # cnv: zero padding of every 3x3 conv (exact only for {0,1} activations)


TOPOLOGIES = {
    "tfc": TopologySpec("fc", (1, 28, 28), (64, 64, 64), description="MNIST, 3x64 (BNN-PYNQ TFC)"),
    "sfc": TopologySpec("fc", (1, 28, 28), (256, 256, 256), description="MNIST, 3x256 (BNN-PYNQ SFC)"),
    "lfc": TopologySpec("fc", (1, 28, 28), (1024, 1024, 1024), description="MNIST, 3x1024 (BNN-PYNQ LFC)"),
    "digits_mlp": TopologySpec(
        "fc", (1, 8, 8), (256, 256), input_quant="uint4",
        description="8x8 digits, 4-bit inputs, 2x256"),
    "cnv": TopologySpec(
        "cnv", (3, 32, 32), (64, 64, 128, 128, 256, 256), fc_hidden=(512, 512),
        input_quant="int8", description="CIFAR-10, 6 convs + 3 FC (BNN-PYNQ CNV)"),
    "digits_cnv": TopologySpec(
        "cnv", (1, 8, 8), (16, 32), fc_hidden=(64,), input_quant="uint4", pool_after=(1,),
        description="8x8 digits, 4-bit inputs, 2 convs + max pool + 2 FC"),
}


def _input_quantizer(spec: TopologySpec, act: str) -> nn.Module:
    """Host-side input quantization: images in [0, 1] to the first layer's integers."""
    if spec.input_quant == "uint4":
        return QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False)
    if spec.input_quant == "int8":
        return nn.Sequential(_Affine(2.0, -1.0), QuantIdentity(act_quant=Int8InputQuant, return_quant_tensor=False))
    if act == "bipolar":  # pixel >= 0.5 -> +1
        return nn.Sequential(_Affine(2.0, -1.0), QuantIdentity(act_quant=BipolarActQuant, return_quant_tensor=False))
    # pixel > 0.5 -> 1 (fixed, not learnable: it is part of the data pipeline)
    return nn.Sequential(
        ChannelThreshold(1, init=0.5, learnable=False),
        QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False))


class _Affine(nn.Module):
    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x):
        return x * self.scale + self.offset


class BinaryNet(nn.Module):
    """Sequential BNN with latent-weight clipping for training."""

    def __init__(self, name: str, act: str, weight_scaling: str = "none", spec: TopologySpec | None = None):
        super().__init__()
        if spec is None and name not in TOPOLOGIES:
            raise BnnforgeError(f"unknown topology {name!r}; choices: {', '.join(sorted(TOPOLOGIES))}")
        if act not in ACTIVATIONS:
            raise BnnforgeError(f"unknown activation {act!r}; choices: {', '.join(ACTIVATIONS)}")
        if weight_scaling not in WEIGHT_SCALINGS:
            raise BnnforgeError(
                f"unknown weight scaling {weight_scaling!r}; choices: {', '.join(WEIGHT_SCALINGS)}")
        self.topology, self.act, self.weight_scaling = name, act, weight_scaling
        spec = self.spec = TOPOLOGIES[name] if spec is None else spec
        wq = WEIGHT_SCALINGS[weight_scaling]
        layers = [_input_quantizer(spec, act)]
        c, h, w = spec.input_shape
        if spec.kind == "cnv":
            for i, out_c in enumerate(spec.hidden):
                pad = spec.conv_pad
                layers += [QuantConv2d(c, out_c, 3, padding=pad, bias=False, weight_quant=wq),
                           nn.BatchNorm2d(out_c), binary_activation(act, out_c)]
                c, h, w = out_c, h - 2 + 2 * pad, w - 2 + 2 * pad
                if i in spec.pool_after:
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
            layers.append(nn.Flatten())
            fc_in, fc_hidden = c * h * w, spec.fc_hidden
        else:
            layers.append(nn.Flatten())
            fc_in, fc_hidden = c * h * w, spec.hidden
        for width in fc_hidden:
            layers += [QuantLinear(fc_in, width, bias=False, weight_quant=wq),
                       nn.BatchNorm1d(width), binary_activation(act, width)]
            fc_in = width
        # The last layer keeps unscaled weights: per-channel scales would change the argmax.
        layers += [QuantLinear(fc_in, spec.num_classes, bias=False, weight_quant=BinaryWeightNoScale),
                   PositiveScalarAffine(init_scale=fc_in ** -0.5)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    @torch.no_grad()
    def clip_latent_weights(self, bound: float = 1.0):
        for m in self.modules():
            if isinstance(m, (QuantLinear, QuantConv2d)):
                m.weight.clamp_(-bound, bound)

    def meta(self) -> dict:
        return {"topology": self.topology, "activation": self.act, "weight_scaling": self.weight_scaling,
                "input_shape": list(self.spec.input_shape), "num_classes": self.spec.num_classes}


def build_model(topology: str, act: str, weight_scaling: str = "none") -> BinaryNet:
    return BinaryNet(topology, act, weight_scaling)


def build_custom_cnv(input_shape, channels, fc_hidden, num_classes: int, act: str, pool_after=(),
                     conv_pad: int = 0, weight_scaling: str = "none", input_quant: str = "binary") -> BinaryNet:
    """A convolutional BinaryNet of arbitrary shape: 3x3 convs (stride 1, padding conv_pad),
    2x2 max pools after the convs listed in pool_after, then fully-connected layers."""
    if input_quant not in ("binary", "uint4", "int8"):
        raise BnnforgeError(f"unknown input quantization {input_quant!r}; choices: binary, uint4, int8")
    spec = TopologySpec("cnv", tuple(input_shape), tuple(channels), fc_hidden=tuple(fc_hidden),
                        input_quant=input_quant, num_classes=int(num_classes), pool_after=tuple(pool_after),
                        conv_pad=int(conv_pad), description="custom convolutional")
    return BinaryNet("custom_cnv", act, weight_scaling, spec=spec)


def build_custom_fc(input_shape, hidden, num_classes: int, act: str, weight_scaling: str = "none",
                    input_quant: str = "binary") -> BinaryNet:
    """A fully-connected BinaryNet of arbitrary widths (same construction as the named
    topologies; used by the differential fuzzer)."""
    if input_quant not in ("binary", "uint4", "int8"):
        raise BnnforgeError(f"unknown input quantization {input_quant!r}; choices: binary, uint4, int8")
    spec = TopologySpec("fc", tuple(input_shape), tuple(hidden), input_quant=input_quant,
                        num_classes=int(num_classes), description="custom fully-connected")
    return BinaryNet("custom_fc", act, weight_scaling, spec=spec)


@torch.no_grad()
def randomize_batchnorm(model: "BinaryNet", generator: torch.Generator | None = None,
                        calibration: torch.Tensor | None = None) -> None:
    """Random BatchNorm statistics and affine parameters (negative gammas included),
    so that export and compiler checks see every sign case, not only the identity.

    Statistics are first measured on `calibration` inputs (random images by default)
    and then perturbed: drawn from nothing, they would put most channels far from
    their threshold and collapse the network onto one label.
    """
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if calibration is None:
        calibration = torch.rand((64,) + tuple(model.spec.input_shape), generator=generator)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    was_training = model.training
    model.train()
    model(calibration)
    model.train(was_training)
    for bn in bns:
        n = bn.num_features
        std = bn.running_var.sqrt()
        bn.running_mean.add_(torch.randn(n, generator=generator) * 0.5 * std)
        bn.running_var.mul_(torch.rand(n, generator=generator) * 1.5 + 0.5)
        bn.weight.copy_(torch.randn(n, generator=generator))
        bn.bias.copy_(torch.randn(n, generator=generator) * 0.5)
        bn.momentum = 0.1
    for m in model.modules():
        if isinstance(m, ChannelThreshold) and m.threshold.requires_grad:
            m.threshold.copy_(torch.randn(m.threshold.shape, generator=generator) * 0.3)
