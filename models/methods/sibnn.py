"""Si-BNN (Wang, He, Cheng, TNNLS 2022): {0,1} activations with a per-channel trainable
threshold and scale, and an asymmetric backward window.

    y = (x - b_c) * s_c        s_c = exp(log_s_c) > 0 (never flips the comparison)
    a = 1[y > 0]               the tie y = 0 gives 0
    da/dy = 1[lo < y < hi]     lo = -0.3, hi = 1.0 by default (reference code)

Pieces (one idea per class):
  SiBNNThresholdScale   the y = (x - b) * s module (exports as Sub, Mul with constants)
  WindowedCeilSte       Brevitas float_to_int_impl: ceil forward, windowed gradient
  SiBNNActQuant         Brevitas injector: UnipolarActQuant with that window (exports as
                        Quant(bit_width=1, signed=0, rounding_mode=CEIL), as {0,1} does)
Weights: sign(w) * mean|w_c| per output channel (models.quantizers.BinaryWeightPerChannelScale),
latent weights clipped to [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn
from brevitas.core.function_wrapper import TensorClampSte
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from bnnforge.models.quantizers import BinaryWeightPerChannelScale, UnipolarActQuant

DEFAULTS = {"window_lo": -0.3, "window_hi": 1.0, "threshold_init": 0.0, "scale_init": 1.0}


class _WindowedCeil(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, lo, hi):
        ctx.save_for_backward(((y > lo) & (y < hi)).to(y.dtype))
        return torch.ceil(y)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None, None


class WindowedCeilSte(nn.Module):
    """ceil(y) forward; the gradient passes only for window_lo < y < window_hi."""

    def __init__(self, window_lo: float = -0.3, window_hi: float = 1.0):
        super().__init__()
        if not window_lo < 0.0 < window_hi:
            raise ValueError(f"the backward window must contain 0: got ({window_lo}, {window_hi})")
        self.window_lo, self.window_hi = float(window_lo), float(window_hi)

    def forward(self, y):
        return _WindowedCeil.apply(y, self.window_lo, self.window_hi)


class SiBNNActQuant(UnipolarActQuant):
    """{0,1} = 1[y > 0] with the Si-BNN asymmetric backward window on y.

    The clamp after the ceil is straight-through (TensorClampSte), so the window alone
    decides where gradient flows. Override `window_lo` / `window_hi` with
    `SiBNNActQuant.let(window_lo=..., window_hi=...)`.
    """

    float_to_int_impl = WindowedCeilSte
    tensor_clamp_impl = TensorClampSte
    window_lo = DEFAULTS["window_lo"]
    window_hi = DEFAULTS["window_hi"]


class SiBNNThresholdScale(nn.Module):
    """y = (x - b_c) * s_c per channel (dim 1), s_c = exp(log_s_c) kept positive."""

    def __init__(self, channels: int, threshold_init: float = 0.0, scale_init: float = 1.0):
        super().__init__()
        if scale_init <= 0:
            raise ValueError(f"scale_init must be positive, got {scale_init}")
        self.threshold = nn.Parameter(torch.full((channels,), float(threshold_init)))
        self.log_scale = nn.Parameter(torch.full((channels,), float(scale_init)).log())

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, x):
        shape = [1, -1] + [1] * (x.dim() - 2)
        return (x - self.threshold.view(shape)) * self.log_scale.exp().view(shape)


def sibnn_activation(channels: int, window_lo: float = -0.3, window_hi: float = 1.0,
                     threshold_init: float = 0.0, scale_init: float = 1.0) -> list[nn.Module]:
    act_quant = SiBNNActQuant.let(window_lo=float(window_lo), window_hi=float(window_hi))
    return [SiBNNThresholdScale(channels, threshold_init, scale_init),
            QuantIdentity(act_quant=act_quant, return_quant_tensor=False)]


def hidden_block(in_f: int, out_f: int, **cfg) -> list[nn.Module]:
    """QuantLinear (sign * mean|w| per channel) -> BatchNorm -> (x - b) * s -> 1[y > 0]."""
    return [QuantLinear(in_f, out_f, bias=False, weight_quant=BinaryWeightPerChannelScale),
            nn.BatchNorm1d(out_f),
            *sibnn_activation(out_f, **{k: cfg[k] for k in DEFAULTS if k in cfg})]


def conv_block(in_c: int, out_c: int, padding: int = 0, **cfg) -> list[nn.Module]:
    """3x3 QuantConv2d (sign * mean|w| per output channel) -> BatchNorm -> (x - b) * s -> 1[y > 0]."""
    return [QuantConv2d(in_c, out_c, 3, padding=padding, bias=False, weight_quant=BinaryWeightPerChannelScale),
            nn.BatchNorm2d(out_c),
            *sibnn_activation(out_c, **{k: cfg[k] for k in DEFAULTS if k in cfg})]
