"""Pieces shared by the five methods: the digits-sized MLP (optionally with 3x3 convs in
front) every method plugs its blocks into, and small straight-through helpers.

`MethodNet` has the same outer shape as `models.topologies.BinaryNet` for `digits_mlp`
/ `digits_cnv` (4-bit inputs, conv blocks with max pools, flatten, hidden blocks, an
unscaled {-1,+1} last layer and one positive per-tensor affine map), so
`models.train.train`, `models.export.export_qonnx` and `check_export` work on it
unchanged. Conv and hidden blocks come from the method modules.

Hooks the training loop uses (all optional on a module):
  clip_latent_()            called after every optimizer step (via clip_latent_weights)
  on_epoch_start(e, E)      called before epoch e of E (schedules, e.g. the EDE temperature)
  regularization(ce)        scalar tensor added to the loss (ce: this batch's cross-entropy)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.layers import PositiveScalarAffine
from bnnforge.models.quantizers import BinaryWeightNoScale, Uint4InputQuant


@dataclass(frozen=True)
class MLPSpec:
    """Digits-sized MLP: 8x8 images in [0, 1], 4-bit inputs, hidden widths, 10 classes.

    With `conv` (output channels of 3x3 convs, stride 1, padding `conv_pad`, a 2x2 max
    pool after the convs listed in `pool_after`) the convs come first and `hidden` holds
    the fully-connected widths after them; `kind` is then "cnv"."""
    input_shape: tuple = (1, 8, 8)
    hidden: tuple = (256, 256)
    num_classes: int = 10
    kind: str = "fc"
    input_quant: str = "uint4"
    description: str = field(default="8x8 digits MLP (method variant)")
    conv: tuple = ()
    pool_after: tuple = ()
    conv_pad: int = 0


def ste_sign01(w: torch.Tensor) -> torch.Tensor:
    """1[w > 0] in the forward pass (the tie w = 0 gives 0), identity gradient / 2
    (the derivative of (sign(w) + 1) / 2 under the identity STE for sign)."""
    hard = (w > 0).to(w.dtype)
    return hard.detach() + (w - w.detach()) * 0.5


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) (half to even, as torch.round) forward, identity gradient."""
    return x.round().detach() + (x - x.detach())


class MethodNet(nn.Module):
    """input quantizer -> conv blocks -> flatten -> hidden blocks -> {-1,+1} last layer
    -> positive affine.

    `blocks`: one list of modules per hidden layer (weight layer, norm, pre-activation
    modules, activation quantizer), built by a method module; `conv_blocks` the same per
    conv (a max pool, when there is one, closes its block).
    """

    def __init__(self, method: str, blocks: list[list[nn.Module]], last_in: int, spec: MLPSpec,
                 config: dict | None = None, latent_clip: float | None = 1.0,
                 conv_blocks: list[list[nn.Module]] = ()):
        super().__init__()
        self.method, self.spec, self.config = method, spec, dict(config or {})
        self.latent_clip = latent_clip
        layers: list[nn.Module] = [QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False)]
        for block in conv_blocks:
            layers += block
        layers.append(nn.Flatten())
        for block in blocks:
            layers += block
        # Last layer: unscaled {-1,+1} weights and one positive scale + bias, so the
        # hardware's label select over integer accumulators equals the argmax.
        layers += [QuantLinear(last_in, spec.num_classes, bias=False, weight_quant=BinaryWeightNoScale),
                   PositiveScalarAffine(init_scale=last_in ** -0.5)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    # ---- training hooks --------------------------------------------------------
    @torch.no_grad()
    def clip_latent_weights(self):
        for m in self.modules():
            if hasattr(m, "clip_latent_") and m is not self:
                m.clip_latent_()
            elif isinstance(m, (QuantLinear, QuantConv2d)) and self.latent_clip is not None:
                _latent_weight(m).clamp_(-self.latent_clip, self.latent_clip)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "on_epoch_start"):
                m.on_epoch_start(epoch, epochs)

    def regularization(self, ce: torch.Tensor) -> torch.Tensor:
        total = ce.new_zeros(())
        for m in self.modules():
            if m is not self and hasattr(m, "regularization"):
                total = total + m.regularization(ce)
        for fn in getattr(self, "_regularizers", []):
            total = total + fn(self, ce)
        return total

    def add_regularizer(self, fn) -> None:
        """fn(model, ce) -> scalar tensor (model-level regularizers, e.g. Binary-L2)."""
        if not hasattr(self, "_regularizers"):
            self._regularizers = []
        self._regularizers.append(fn)

    def meta(self) -> dict:
        meta = {"topology": "method_cnv" if self.spec.conv else "method_mlp", "method": self.method,
                "hidden": list(self.spec.hidden), "input_shape": list(self.spec.input_shape),
                "num_classes": self.spec.num_classes}
        if self.spec.conv:
            meta.update(conv=list(self.spec.conv), pool_after=list(self.spec.pool_after),
                        conv_pad=self.spec.conv_pad)
        return meta


def _latent_weight(m: nn.Module) -> torch.Tensor:
    """The trainable weight tensor of a layer (the original one under a parametrization)."""
    p = getattr(m, "parametrizations", None)
    if p is not None and "weight" in p:
        return p["weight"].original
    return m.weight


def binary_layers(model: nn.Module):
    """(name, latent weight) of every binary-weight layer of a model."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (QuantLinear, QuantConv2d)):
            out.append((name, _latent_weight(m)))
        elif hasattr(m, "latent_weight") and isinstance(getattr(m, "latent_weight"), torch.Tensor):
            out.append((name, m.latent_weight))
    return out


def check_channels(kind: str, allowed: tuple) -> None:
    if kind not in allowed:
        raise BnnforgeError(f"unknown option {kind!r}; choices: {', '.join(allowed)}")
