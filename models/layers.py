"""Small modules the topologies are built from (no quantizer logic here)."""
import torch
from torch import nn
from brevitas.nn import QuantIdentity

from .quantizers import BipolarActQuant, UnipolarActQuant

ACTIVATIONS = ("bipolar", "unipolar")


class ChannelThreshold(nn.Module):
    """Subtracts a learnable per-channel threshold b_c (channel = dim 1): x - b.

    Followed by UnipolarActQuant this gives the Si-BNN activation 1[x > b_c]. It
    exports as a Sub with a constant, which the compiler folds into the integer
    thresholds of the preceding layer.
    """

    def __init__(self, channels: int, init: float = 0.0, learnable: bool = True):
        super().__init__()
        self.threshold = nn.Parameter(torch.full((channels,), float(init)), requires_grad=learnable)

    def forward(self, x):
        shape = [1, -1] + [1] * (x.dim() - 2)
        return x - self.threshold.view(shape)


class PositiveScalarAffine(nn.Module):
    """y = exp(log_scale) * x + bias with one scale and one bias for the whole tensor.

    Used after the last layer: a positive per-tensor affine map keeps the argmax of
    the integer accumulators, so the hardware's label select needs no arithmetic.
    """

    def __init__(self, init_scale: float = 1.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init_scale)).log())
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x * self.log_scale.exp() + self.bias


def binary_activation(kind: str, channels: int) -> nn.Module:
    """The 1-bit activation of the given kind over `channels` channels."""
    if kind == "bipolar":
        return QuantIdentity(act_quant=BipolarActQuant, return_quant_tensor=False)
    if kind == "unipolar":
        return nn.Sequential(
            ChannelThreshold(channels),
            QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False),
        )
    raise ValueError(f"unknown activation kind {kind!r}; choices: {', '.join(ACTIVATIONS)}")
