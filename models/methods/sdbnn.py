"""SD-BNN: self-distribution BNN (Xue et al., 2021/2022). No scaling factors.

Pieces (one idea per class):
  WeightSelfDistribution   torch parametrization of a QuantLinear's weight:
                           w' = w + sigmoid(a_c) * 0.01 * mean(w_c).detach(), a_c init 0.
                           The layer's weight quantizer binarizes w', so the exported graph
                           holds BipolarQuant(w') on a constant: the shift is folded into the
                           stored sign bits (tidy-up sees plain {-1,+1} weights).
  StaticActivationShift    ASD, static form: a' = a + d_c (learned per channel, init 0);
                           exports as Add with a constant, which streamlining folds into the
                           thresholds.
  SEActivationShift        ASD, dynamic form: a' = a + SE(a), SE = global average pool ->
                           FC(C -> C/r) -> ReLU -> FC(C/r -> C) -> sigmoid (r = 16). A per-image
                           shift: exports with GlobalAveragePool / Gemm / Relu / Sigmoid, which
                           the streaming compiler rejects (it needs the whole frame first).
  EDEBinaryQuant           Brevitas tensor_quant: sign forward (sign(0) = +1), IR-Net EDE
                           backward g * k * t * (1 - tanh^2(t x)), t = Tmin (Tmax/Tmin)^(e/E),
                           k = max(1/t, 1), updated by on_epoch_start(e, E).
  EDEBinaryActQuant / EDEBinaryWeightQuant   injectors using it (per-tensor constant scale 1).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from brevitas.core.bit_width import BitWidthConst
from brevitas.core.utils import StatelessBuffer
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

from bnnforge.models.errors import BnnforgeError

EDE_PRESETS = {"vgg_small": (0.1, 10.0), "resnet": (1e-3, 10.0)}
DEFAULTS = {"ede_preset": "vgg_small", "asd": "static", "se_reduction": 16, "wsd_factor": 0.01,
            "ede_weights": True}


def ede_t_k(epoch: int, epochs: int, t_min: float, t_max: float) -> tuple[float, float]:
    """IR-Net EDE schedule: t = Tmin * (Tmax/Tmin)^(e/E), k = max(1/t, 1)."""
    t = t_min * (t_max / t_min) ** (epoch / max(epochs, 1))
    return t, max(1.0 / t, 1.0)


class _EDESign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, k):
        ctx.save_for_backward(x)
        ctx.t, ctx.k = t, k
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t, k = ctx.t, ctx.k
        return g * k * t * (1.0 - torch.tanh(t * x) ** 2), None, None


class EDEBinaryQuant(nn.Module):
    """Brevitas-compatible binary tensor_quant (returns value, scale, zero point, bit width)
    with the IR-Net error-decay estimator as its backward."""

    def __init__(self, scaling_impl: nn.Module, ede_t_min: float = 0.1, ede_t_max: float = 10.0,
                 signed: bool = True):
        super().__init__()
        if not (0 < ede_t_min <= ede_t_max):
            raise BnnforgeError(f"EDE needs 0 < Tmin <= Tmax, got ({ede_t_min}, {ede_t_max})")
        self.scaling_impl = scaling_impl
        self.bit_width = BitWidthConst(1)
        self.zero_point = StatelessBuffer(torch.tensor(0.0))
        self.t_min, self.t_max = float(ede_t_min), float(ede_t_max)
        self.t, self.k = ede_t_k(0, 1, self.t_min, self.t_max)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.t, self.k = ede_t_k(epoch, epochs, self.t_min, self.t_max)

    def forward(self, x):
        scale = self.scaling_impl(x)
        y = _EDESign.apply(x, self.t, self.k) * scale
        return y, scale, self.zero_point(), self.bit_width()


class EDEBinaryActQuant(SignedBinaryActPerTensorConst):
    """{-1,+1} activations (sign(0) = +1), EDE backward; exports as BipolarQuant."""
    tensor_quant = EDEBinaryQuant
    scaling_const = 1.0
    ede_t_min, ede_t_max = EDE_PRESETS["vgg_small"]


class EDEBinaryWeightQuant(SignedBinaryWeightPerTensorConst):
    """{-1,+1} weights without scale, EDE backward; exports as BipolarQuant."""
    tensor_quant = EDEBinaryQuant
    scaling_const = 1.0
    ede_t_min, ede_t_max = EDE_PRESETS["vgg_small"]


class WeightSelfDistribution(nn.Module):
    """Parametrization w -> w + sigmoid(a_c) * factor * mean(w_c).detach() (a_c per output channel)."""

    def __init__(self, out_channels: int, factor: float = 0.01):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(out_channels))
        self.factor = float(factor)

    def forward(self, w):
        dims = tuple(range(1, w.dim()))
        mean = w.mean(dim=dims, keepdim=True).detach()
        shape = (-1,) + (1,) * (w.dim() - 1)
        return w + torch.sigmoid(self.a).view(shape) * self.factor * mean


def wsd_linear(in_f: int, out_f: int, weight_quant, factor: float = 0.01) -> QuantLinear:
    layer = QuantLinear(in_f, out_f, bias=False, weight_quant=weight_quant)
    parametrize.register_parametrization(layer, "weight", WeightSelfDistribution(out_f, factor))
    return layer


def wsd_conv(in_c: int, out_c: int, weight_quant, factor: float = 0.01, padding: int = 0) -> QuantConv2d:
    """3x3 QuantConv2d (no bias) with the WSD parametrization on its weight."""
    layer = QuantConv2d(in_c, out_c, 3, padding=padding, bias=False, weight_quant=weight_quant)
    parametrize.register_parametrization(layer, "weight", WeightSelfDistribution(out_c, factor))
    return layer


class StaticActivationShift(nn.Module):
    """a' = a + d_c, d_c learned per channel (dim 1), init 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x + self.shift.view([1, -1] + [1] * (x.dim() - 2))


class SEActivationShift(nn.Module):
    """a' = a + sigmoid(FC(ReLU(FC(GAP(a))))) per image and channel (squeeze-excitation)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // int(reduction))
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        # (N, C) feature vectors are treated as (N, C, 1, 1) maps so the graph shows the
        # whole-frame reduction (GlobalAveragePool) that convolutional inputs need.
        x4 = x if x.dim() == 4 else x.reshape(x.shape[0], x.shape[1], 1, 1)
        s = F.adaptive_avg_pool2d(x4, 1).flatten(1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x + s.view([s.shape[0], s.shape[1]] + [1] * (x.dim() - 2))


def _quants(ede_preset="vgg_small", ede_t_min=None, ede_t_max=None):
    if ede_preset not in EDE_PRESETS:
        raise BnnforgeError(f"unknown EDE preset {ede_preset!r}; choices: {', '.join(EDE_PRESETS)}")
    t_min, t_max = EDE_PRESETS[ede_preset]
    t_min = t_min if ede_t_min is None else float(ede_t_min)
    t_max = t_max if ede_t_max is None else float(ede_t_max)
    return (EDEBinaryActQuant.let(ede_t_min=t_min, ede_t_max=t_max),
            EDEBinaryWeightQuant.let(ede_t_min=t_min, ede_t_max=t_max))


def _shift_and_quants(channels, ede_preset, asd, se_reduction, ede_weights, ede_t_min, ede_t_max):
    """(ASD module, activation quantizer, weight quantizer) of one block."""
    act_q, w_q = _quants(ede_preset, ede_t_min, ede_t_max)
    if not ede_weights:
        from bnnforge.models.quantizers import BinaryWeightNoScale
        w_q = BinaryWeightNoScale
    if asd == "static":
        shift = StaticActivationShift(channels)
    elif asd == "se":
        shift = SEActivationShift(channels, se_reduction)
    elif asd == "none":
        shift = nn.Identity()
    else:
        raise BnnforgeError(f"unknown ASD form {asd!r}; choices: static, se, none")
    return shift, act_q, w_q


def hidden_block(in_f: int, out_f: int, ede_preset: str = "vgg_small", asd: str = "static",
                 se_reduction: int = 16, wsd_factor: float = 0.01, ede_weights: bool = True,
                 ede_t_min: float | None = None, ede_t_max: float | None = None, **_) -> list[nn.Module]:
    """WSD QuantLinear (sign, no scale) -> BatchNorm -> ASD (static or SE) -> sign (EDE)."""
    shift, act_q, w_q = _shift_and_quants(out_f, ede_preset, asd, se_reduction, ede_weights, ede_t_min, ede_t_max)
    return [wsd_linear(in_f, out_f, w_q, wsd_factor), nn.BatchNorm1d(out_f), shift,
            QuantIdentity(act_quant=act_q, return_quant_tensor=False)]


def conv_block(in_c: int, out_c: int, padding: int = 0, ede_preset: str = "vgg_small", asd: str = "static",
               se_reduction: int = 16, wsd_factor: float = 0.01, ede_weights: bool = True,
               ede_t_min: float | None = None, ede_t_max: float | None = None, **_) -> list[nn.Module]:
    """WSD 3x3 QuantConv2d (sign, no scale) -> BatchNorm -> ASD (static or SE, per image
    over the whole map) -> sign (EDE)."""
    shift, act_q, w_q = _shift_and_quants(out_c, ede_preset, asd, se_reduction, ede_weights, ede_t_min, ede_t_max)
    return [wsd_conv(in_c, out_c, w_q, wsd_factor, padding), nn.BatchNorm2d(out_c), shift,
            QuantIdentity(act_quant=act_q, return_quant_tensor=False)]
