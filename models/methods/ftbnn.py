"""FTBNN: rethinking non-linearity for 1-bit CNNs (Su et al., 2020).

Pieces:
  FPReLU               f(x) = a_c * x (x >= 0), b_c * x (x < 0), both slopes learnable per
                       channel, init a = 1, b = 0.25 (our reading: no public code; the paper's
                       "fully parametric ReLU" read as a PReLU with a learnable positive slope
                       too). Placed between the BatchNorm and the binary activation.
  GroupedBinaryLinear  "group execution" for fully-connected layers: a block-diagonal {-1,+1}
                       weight (groups blocks of out/groups x in/groups); for convolutions use
                       grouped_binary_conv (QuantConv2d(groups=G)).

Export (hardware form): the FPReLU is followed by a binary quantizer with its threshold at
0, so only the sign pattern of f matters. Per channel f is replaced by x * s_c with
s_c in {+1, -1, 0} giving the same 1-bit output on x < 0, x = 0 and x > 0:
  a, b > 0   -> s = +1 (folds away: no node at all when every channel has it)
  a, b < 0   -> s = -1 (streamlining flips that weight row)
  constant outputs (e.g. bipolar with a > 0, b < 0: always +1) -> s = 0
and a channel whose 1-bit output is not monotonic in x (e.g. {0,1} output with a > 0,
b < 0: on for x < 0 and x > 0, off at 0) cannot be one threshold: export refuses it with
a message naming the channel. `FPReLU.exact_export = True` emits the exact piecewise form
a*Relu(x) - b*Relu(-x) instead (the compiler does not accept Relu between layers).
The grouped weight exports as Quant(W, scale 1, 2-bit signed narrow) on a constant
block-diagonal {-1, 0, +1} matrix. A grouped convolution exports as Conv(group=G) whose
weight [O, C/G, k, k] is BipolarQuant on a constant.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from brevitas.nn import QuantConv2d, QuantLinear

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.layers import binary_activation
from bnnforge.models.quantizers import BinaryWeightNoScale

DEFAULTS = {"groups": 2, "fprelu_a": 1.0, "fprelu_b": 0.25, "act": "bipolar"}


def _on(y: torch.Tensor, kind: str) -> torch.Tensor:
    return y >= 0 if kind == "bipolar" else y > 0


class FPReLU(nn.Module):
    """Per-channel f(x) = a_c x for x >= 0, b_c x for x < 0 (channel = dim 1)."""

    exact_export = False

    def __init__(self, channels: int, a_init: float = 1.0, b_init: float = 0.25, next_kind: str = "bipolar"):
        super().__init__()
        self.a = nn.Parameter(torch.full((channels,), float(a_init)))
        self.b = nn.Parameter(torch.full((channels,), float(b_init)))
        self.next_kind = next_kind  # the 1-bit quantizer that follows ("bipolar" or "unipolar")
        self._export_scale = None   # set by prepare_export (models.export) for the length of one export

    def _shape(self, x):
        return [1, -1] + [1] * (x.dim() - 2)

    def prepare_export(self) -> None:
        """Computes the export form before tracing: the torch.export (dynamo) exporter traces
        with fake parameters, whose values sign_equivalent cannot read."""
        self._export_scale = None if self.exact_export else self.sign_equivalent().tolist()

    def finish_export(self) -> None:
        self._export_scale = None

    def forward(self, x):
        if self._export_scale is not None or (torch.onnx.is_in_onnx_export() and not self.exact_export):
            # Python floats, not tensors: a branch on traced values would not export
            s = self._export_scale if self._export_scale is not None else self.sign_equivalent().tolist()
            if all(v == 1.0 for v in s):
                return x
            return x * torch.tensor(s, dtype=x.dtype).view(self._shape(x))
        a, b = self.a.view(self._shape(x)), self.b.view(self._shape(x))
        return a * F.relu(x) - b * F.relu(-x)

    @torch.no_grad()
    def sign_equivalent(self) -> torch.Tensor:
        """s_c in {+1, -1, 0} with q(s_c * x) == q(f(x)) for the following quantizer q,
        or BnnforgeError when no such s_c exists."""
        probe = torch.tensor([-1.0, 0.0, 1.0])
        # Plain Python values in, one new tensor out: under ONNX export (tracing) the
        # result is then a single constant, not a traced per-channel chain of
        # Gather/ScatterND/... nodes (thousands of them, which qonnx's one-node-at-a-time
        # constant folding then takes many minutes to fold).
        slopes = list(zip(self.a.detach().cpu().tolist(), self.b.detach().cpu().tolist()))
        out = []
        for c, (a, b) in enumerate(slopes):
            f = torch.where(probe >= 0, a * probe, b * probe)
            want = _on(f, self.next_kind)
            for s in (1.0, -1.0, 0.0):
                if torch.equal(_on(s * probe, self.next_kind), want):
                    out.append(s)
                    break
            else:
                raise BnnforgeError(
                    f"FPReLU channel {c}: slopes a={a:g}, b={b:g} make the following {self.next_kind} "
                    f"activation non-monotonic in its input (on/off/on = {want.int().tolist()} for x<0, "
                    "x=0, x>0); one threshold cannot express it")
        return torch.tensor(out, dtype=self.a.dtype, device=self.a.device)


class GroupedBinaryLinear(nn.Module):
    """Block-diagonal binary Linear: `groups` blocks of out/groups x in/groups {-1,+1}
    weights, zeros elsewhere (a fixed 0/1 mask on a dense latent weight)."""

    def __init__(self, in_features: int, out_features: int, groups: int = 2):
        super().__init__()
        if groups < 1 or in_features % groups or out_features % groups:
            raise BnnforgeError(f"groups={groups} must divide in_features={in_features} "
                                f"and out_features={out_features}")
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        mask = torch.block_diag(*[torch.ones(out_features // groups, in_features // groups)] * groups)
        self.register_buffer("mask", mask)
        bound = 1.0 / math.sqrt(in_features // groups)
        self.latent_weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound) * mask)

    def quant_weight(self) -> torch.Tensor:
        """Dense block-diagonal weight [out, in]; sign(0) = +1, STE inside [-1, 1]."""
        w = self.latent_weight
        hard = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
        ste = hard.detach() + (w.clamp(-1, 1) - w.clamp(-1, 1).detach())
        return ste * self.mask

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            from brevitas.export.onnx.qonnx.function import BrevitasQuantTorchScriptFn
            with torch.no_grad():
                w = self.quant_weight()
            return F.linear(x, BrevitasQuantTorchScriptFn.apply(
                w, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(2.0), True, True, "ROUND"))
        return F.linear(x, self.quant_weight())

    @torch.no_grad()
    def clip_latent_(self) -> None:
        self.latent_weight.clamp_(-1.0, 1.0).mul_(self.mask)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, groups={self.groups}"


def grouped_binary_conv(in_c: int, out_c: int, kernel_size: int = 3, groups: int = 2, **kw) -> QuantConv2d:
    """Group execution for convolutions: QuantConv2d(groups=G) with {-1,+1} weights."""
    return QuantConv2d(in_c, out_c, kernel_size, groups=groups, bias=False, weight_quant=BinaryWeightNoScale, **kw)


def hidden_block(in_f: int, out_f: int, groups: int = 2, fprelu_a: float = 1.0, fprelu_b: float = 0.25,
                 act: str = "bipolar", first: bool = False, **_) -> list[nn.Module]:
    """(Grouped) binary Linear -> BatchNorm -> FPReLU -> 1-bit activation.

    The first layer (multi-bit image input) is never grouped."""
    if groups == 1 or first:
        lin = QuantLinear(in_f, out_f, bias=False, weight_quant=BinaryWeightNoScale)
    else:
        lin = GroupedBinaryLinear(in_f, out_f, groups)
    return [lin, nn.BatchNorm1d(out_f), FPReLU(out_f, fprelu_a, fprelu_b, next_kind=act),
            binary_activation(act, out_f)]


def conv_block(in_c: int, out_c: int, padding: int = 0, groups: int = 2, fprelu_a: float = 1.0,
               fprelu_b: float = 0.25, act: str = "bipolar", first: bool = False, **_) -> list[nn.Module]:
    """(Grouped) 3x3 binary conv -> BatchNorm -> FPReLU -> 1-bit activation.

    The first conv (multi-bit image input) is never grouped."""
    if groups == 1 or first:
        conv = QuantConv2d(in_c, out_c, 3, padding=padding, bias=False, weight_quant=BinaryWeightNoScale)
    else:
        if groups < 1 or in_c % groups or out_c % groups:
            raise BnnforgeError(f"groups={groups} must divide in_channels={in_c} and out_channels={out_c}")
        conv = grouped_binary_conv(in_c, out_c, 3, groups=groups, padding=padding)
    return [conv, nn.BatchNorm2d(out_c), FPReLU(out_c, fprelu_a, fprelu_b, next_kind=act),
            binary_activation(act, out_c)]
