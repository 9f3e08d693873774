"""Margin-aware binarized weight networks (Xu et al., ICIG 2017).

Weights only are binarized (deterministic sign, no scale: models.quantizers.
BinaryWeightNoScale); activations stay multi-bit: an unsigned k-bit quantizer with one
learned per-tensor scale (KBitActQuant, k = 2 by default), which also acts as the ReLU.

Binary-L2 regularizer (form and lambda not recovered from the paper; our reading):
    lambda * sum over binary weights of (|w| - 1)^2      (= min((w-1)^2, (w+1)^2))
pulls the latent weights toward the boundaries {-1, +1}. Sum (not mean) over all
binary-weight layers, last layer included; latent weights are clipped to [-1, 1] after
every step as everywhere else. Default lambda = 3e-4 (parameter `l2_lambda`).

Choosing lambda: training uses Adam (models.train), which divides each weight's gradient
by its own running RMS, so what counts is the per-weight ratio of the regularizer's
gradient, 2 * lambda * (1 - |w|), to the cross-entropy gradient, not the loss values.
The sum keeps the per-weight regularizer gradient independent of the model size (a mean
would divide it by the weight count, ~84k for hidden 256-256: lambda would then have to
grow with the model). At init (|w| ~ 0.03-0.06) the per-weight CE gradient RMS on digits
is ~3e-3 (hidden 64-64) and ~0.6e-3..2e-3 (256-256), against 2e-4 for lambda = 1e-4.
Adam also moves a weight by at most ~lr per step, so a short run cannot reach the
boundaries whatever lambda is (4 epochs of digits at lr 0.01, cosine: <= ~0.6 of travel
from ~0.06); too large a lambda then only freezes the signs and accuracy drops
(hidden 64-64, 4 epochs: lambda 3e-3 -> test acc 0.71, 1e-2 -> 0.40).
Measured on digits with the shipped config (hidden 256-256, 20 epochs, lr 0.01 cosine,
batch 64, seeds 0-2), mean | |w| - 1 | / fraction within 0.1 of +-1 / test acc:
    lambda 0     0.913 / 0.00 / 0.983
    lambda 1e-4  0.103 / 0.71 / 0.972
    lambda 3e-4  0.047 / 0.87 / 0.955
    lambda 5e-4  0.033 / 0.92 / 0.950
3e-4 puts most latent weights near +-1 for ~3 points of accuracy and still pulls clearly
at narrow widths / few epochs (hidden 64-64, 4 epochs: gap 0.69 vs 0.90 at lambda 0,
test acc 0.94).

Hardware: {-1,+1} weights times k-bit inputs is add/subtract accumulation; the k-bit
outputs come from 2^k - 1 thresholds per channel (the exported activation is
Quant(bit_width=k, signed=0) with one positive scale).
"""
from __future__ import annotations

import torch
from torch import nn
from brevitas.core.function_wrapper import CeilSte
from brevitas.inject.enum import RestrictValueType, ScalingImplType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant.base import UintQuant
from brevitas.quant.solver import ActQuantSolver

from bnnforge.models.quantizers import BinaryWeightNoScale
from .common import binary_layers

DEFAULTS = {"act_bits": 2, "act_max_init": 2.0, "l2_lambda": 3e-4}


class KBitActQuant(UintQuant, ActQuantSolver):
    """Unsigned k-bit activations (k = bit_width, default 2): round(x / s) clamped to
    [0, 2^k - 1], one learned per-tensor scale s restricted to a power of two (learned
    in the log domain, rounded up; init from max_val / (2^k - 1)).

    Why a power of two: the next layer then sums level * s exactly in float32, so two
    classes with equal integer accumulators get exactly equal logits in torch too, and
    torch's argmax picks the same (first) class as the hardware's label select. With an
    arbitrary s (2/3, say) equal integer sums land an ulp apart in float32 and torch's
    choice among tied classes is rounding noise."""

    bit_width = 2
    scaling_impl_type = ScalingImplType.PARAMETER
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    restrict_value_float_to_int_impl = CeilSte
    min_val = 0.0
    max_val = 2.0


class BinaryL2Regularizer:
    """lambda * sum((|w| - 1)^2) over the latent weights of every binary-weight layer."""

    def __init__(self, l2_lambda: float = DEFAULTS["l2_lambda"]):
        self.l2_lambda = float(l2_lambda)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        terms = [((w.abs() - 1.0) ** 2).sum() for _, w in binary_layers(model)]
        return torch.stack(terms).sum()

    def __call__(self, model: nn.Module, ce: torch.Tensor | None = None) -> torch.Tensor:
        return self.l2_lambda * self.penalty(model)


@torch.no_grad()
def margin_stats(model: nn.Module) -> dict:
    """Mean distance of the latent weights to {-1, +1}, mean(| |w| - 1 |), and the fraction
    within 0.1 of the boundaries."""
    ws = torch.cat([w.detach().flatten() for _, w in binary_layers(model)])
    d = (ws.abs() - 1.0).abs()
    return {"mean_margin_gap": float(d.mean()), "near_boundary_frac": float((d < 0.1).float().mean()),
            "count": int(ws.numel())}


def plot_weight_histogram(models: dict, path, bins: int = 60) -> None:
    """Histogram of the latent binary weights of each model in `models` ({label: model})."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, model in models.items():
        ws = torch.cat([w.detach().flatten() for _, w in binary_layers(model)]).numpy()
        ax.hist(ws, bins=bins, range=(-1.05, 1.05), histtype="step", density=True, label=label)
    ax.set_xlabel("latent weight")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def kbit_activation(act_bits: int = 2, act_max_init: float = 2.0) -> nn.Module:
    return QuantIdentity(act_quant=KBitActQuant.let(bit_width=int(act_bits), max_val=float(act_max_init)),
                         return_quant_tensor=False)


def hidden_block(in_f: int, out_f: int, act_bits: int = 2, act_max_init: float = 2.0, **_) -> list[nn.Module]:
    """QuantLinear (sign, no scale) -> BatchNorm -> unsigned k-bit activation."""
    return [QuantLinear(in_f, out_f, bias=False, weight_quant=BinaryWeightNoScale), nn.BatchNorm1d(out_f),
            kbit_activation(act_bits, act_max_init)]


def conv_block(in_c: int, out_c: int, padding: int = 0, act_bits: int = 2, act_max_init: float = 2.0,
               **_) -> list[nn.Module]:
    """3x3 QuantConv2d (sign, no scale) -> BatchNorm -> unsigned k-bit activation."""
    return [QuantConv2d(in_c, out_c, 3, padding=padding, bias=False, weight_quant=BinaryWeightNoScale),
            nn.BatchNorm2d(out_c), kbit_activation(act_bits, act_max_init)]
