"""Binary domain generalization / sparse BNN (Schiavone, Galati, Zuluaga, 2023).

Weights live in {alpha, beta} instead of {-1, +1}. With the bit B = 1[w > 0]
(the tie w = 0 goes to alpha, B = 0):

    W = alpha + (beta - alpha) * B          (paper: W = tau * sign(w) + phi,
                                             tau = (beta - alpha)/2, phi = (beta + alpha)/2)

"Sparse" state: the bit B = 1. Its fraction p is what the regularizer pushes below EC,
and the hardware only pays for the 1 positions:
    W.x = (beta - alpha) * (B.x) + alpha * sum(x)

Exact integer form (our choice, for bit-exact integer hardware): the layer learns
c = beta - alpha > 0 (as log c) and the ratio r = alpha / c, and the forward pass uses
r quantized to a multiple of 1/q (q a power of two, default 8) with a straight-through
round, m = round(q * r):

    W = (c / q) * (q * B + m)      integer entries {m, m + q}, one float scale c / q

so alpha = c*m/q and beta = c*(m+q)/q, and W.x = (c/q) * (q * (B.x) + m * sum(x)) exactly
in integers. Initialization is the closed form for the initial sign partition:
beta = mean(w | w > 0), alpha = mean(w | w <= 0).

Export: the weight is `Quant(W, scale=c/q, zero_point=0, bit_width=k, signed=1,
narrow=0, ROUND)` on a constant, feeding the Gemm/MatMul (BinaryDomainLinear) or the
Conv's weight input (BinaryDomainConv2d); the integer matrix is round(W / scale). `models.methods.export.recover_binary_domain` gets (B, m, q, scale)
back from an exported graph.

Regularizer: p = mean(B) over all binary-domain layers (identity STE for the count),
h = relu(p - EC), loss += lambda * h with lambda = gamma * CE / (h * (1 - gamma))
detached, and lambda = 0 while h <= 1e-4. Latent weights clamped to [-1.5, 1.5].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.layers import binary_activation
from .common import ste_round, ste_sign01

DEFAULTS = {"q": 8, "ec": 0.10, "gamma": 0.04, "latent_clip": 1.5, "act": "bipolar", "h_eps": 1e-4,
            "blocks": None, "block_lambda": 0.03, "block_margin": 0.05}
# (EC, gamma) reference pairs from methods.md
PRESETS = {
    "cifar10": [(0.5, 0.0), (0.25, 0.02), (0.10, 0.04), (0.05, 0.07), (0.04, 0.07), (0.03, 0.08),
                (0.02, 0.08), (0.01, 0.10)],
    "cifar100": [(0.5, 0.0), (0.05, 0.05), (0.04, 0.05), (0.03, 0.05), (0.02, 0.06), (0.01, 0.07)],
}


def _int_bits(lo: int, hi: int) -> int:
    """Smallest signed bit width holding every integer in [lo, hi]."""
    k = 2
    while -(2 ** (k - 1)) > lo or 2 ** (k - 1) - 1 < hi:
        k += 1
    return k


class BinaryDomainLayer(nn.Module):
    """Weights in {alpha, beta} = (c/q) * {m, m + q} on a latent weight of any shape.

    Holds the weight math shared by the linear and the convolutional form; a subclass
    says how the weight is applied (`_weight_op`) and how the hardware lays it out as a
    matrix (`hw_matrix`)."""

    def __init__(self, weight_shape: tuple, q: int = 8, latent_clip: float = 1.5):
        super().__init__()
        if q < 1 or q & (q - 1):
            raise BnnforgeError(f"q must be a power of two, got {q}")
        self.q, self.latent_clip = int(q), latent_clip
        self.latent_weight = nn.Parameter(torch.empty(*weight_shape))
        nn.init.kaiming_uniform_(self.latent_weight, a=math.sqrt(5))
        self.log_c = nn.Parameter(torch.zeros(()))
        self.ratio = nn.Parameter(torch.full((), -0.5))
        self.closed_form_init()

    @torch.no_grad()
    def closed_form_init(self) -> None:
        """beta = mean(w | w > 0), alpha = mean(w | w <= 0) for the current latent weights."""
        w = self.latent_weight
        pos, neg = w[w > 0], w[w <= 0]
        beta = pos.mean() if pos.numel() else w.abs().mean()
        alpha = neg.mean() if neg.numel() else -w.abs().mean()
        c = (beta - alpha).clamp_min(1e-8)
        self.log_c.copy_(c.log())
        self.ratio.copy_(alpha / c)

    # ---- the quantized weight -----------------------------------------------------
    def bits(self) -> torch.Tensor:
        """B in {0, 1} (forward), identity/2 gradient to the latent weights."""
        return ste_sign01(self.latent_weight)

    def offset(self) -> torch.Tensor:
        """m = round(q * r) (straight-through)."""
        return ste_round(self.q * self.ratio)

    def scale(self) -> torch.Tensor:
        return self.log_c.exp() / self.q

    def quant_weight(self) -> torch.Tensor:
        """(c / q) * (q * B + m): scale times an integer matrix, exactly in float32."""
        return self.scale() * (self.q * self.bits() + self.offset())

    @torch.no_grad()
    def integer_weight(self) -> tuple[torch.Tensor, int, float]:
        """(q * B + m as an integer tensor, m, scale) as the export sees them."""
        m = int(torch.round(self.q * self.ratio).item())
        b = (self.latent_weight > 0).to(torch.int64)
        return self.q * b + m, m, float(self.scale().item())

    @property
    def alpha(self) -> float:
        """The weight value of the B = 0 positions, c * m / q."""
        _, m, scale = self.integer_weight()
        return scale * m

    @property
    def beta(self) -> float:
        """The weight value of the B = 1 positions, c * (m + q) / q."""
        _, m, scale = self.integer_weight()
        return scale * (m + self.q)

    @property
    def tau(self) -> float:
        """Paper form W = tau * sign(w) + phi."""
        return (self.beta - self.alpha) / 2

    @property
    def phi(self) -> float:
        return (self.beta + self.alpha) / 2

    # ---- forward / export -----------------------------------------------------------
    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return self._weight_op(x, self._export_weight())
        return self._weight_op(x, self.quant_weight())

    def _weight_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hw_matrix(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (shaped like the weight) as the hardware's [out, fan_in] weight matrix."""
        raise NotImplementedError

    def _export_weight(self) -> torch.Tensor:
        from brevitas.export.onnx.qonnx.function import BrevitasQuantTorchScriptFn

        w_int, m, scale = self.integer_weight()
        bits = _int_bits(min(m, 0), max(m + self.q, 0))
        # Constants created here (not traced from parameters): the graph gets initializers.
        s = torch.tensor(scale, dtype=torch.float32)
        w = (s * w_int.to(torch.float32)).clone()
        return BrevitasQuantTorchScriptFn.apply(w, s, torch.tensor(0.0), torch.tensor(float(bits)),
                                                False, True, "ROUND")

    @torch.no_grad()
    def clip_latent_(self) -> None:
        self.latent_weight.clamp_(-self.latent_clip, self.latent_clip)

    def ones_fraction(self) -> torch.Tensor:
        return self.bits().mean() * 1.0


class BinaryDomainLinear(BinaryDomainLayer):
    """Linear layer (no bias) with weights in {alpha, beta} = (c/q) * {m, m + q}."""

    def __init__(self, in_features: int, out_features: int, q: int = 8, latent_clip: float = 1.5):
        super().__init__((out_features, in_features), q=q, latent_clip=latent_clip)
        self.in_features, self.out_features = in_features, out_features
        # (C, H, W) when the input is a flattened feature map (set by the conv network)
        self.input_chw = None

    def _weight_op(self, x, w):
        return F.linear(x, w)

    def hw_matrix(self, t):
        if self.input_chw is None:
            return t
        # torch flattens (c, y, x); the hardware streams the map channels-last, (y, x, c)
        c, h, w = self.input_chw
        return t.reshape(t.shape[0], c, h, w).permute(0, 2, 3, 1).reshape(t.shape[0], -1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, q={self.q}"


class BinaryDomainConv2d(BinaryDomainLayer):
    """k x k convolution (stride 1, zero padding, no bias) with weights in {alpha, beta}.

    Exports like the linear form: Quant(W, scale=c/q, ...) on a constant feeding the
    Conv's weight input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 0,
                 q: int = 8, latent_clip: float = 1.5):
        if kernel_size < 1 or padding < 0:
            raise BnnforgeError(f"BinaryDomainConv2d: kernel_size must be >= 1 and padding >= 0, "
                                f"got {kernel_size} and {padding}")
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), q=q, latent_clip=latent_clip)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = int(kernel_size), int(padding)

    def _weight_op(self, x, w):
        return F.conv2d(x, w, padding=self.padding)

    def hw_matrix(self, t):
        # The sliding window unit emits each pixel's patch as (ky, kx, c), channels fastest.
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, padding={self.padding}, q={self.q}")


class SparsityRegularizer:
    """lambda * relu(p - EC), lambda = gamma * CE / (h * (1 - gamma)) detached (0 while h <= eps).

    p is the fraction of B = 1 bits over all binary-domain layers (linear and conv) of the model."""

    def __init__(self, ec: float = 0.10, gamma: float = 0.04, h_eps: float = 1e-4):
        if not 0.0 <= gamma < 1.0:
            raise BnnforgeError(f"gamma must be in [0, 1), got {gamma}")
        self.ec, self.gamma, self.h_eps = float(ec), float(gamma), float(h_eps)

    def ones_fraction(self, model: nn.Module) -> torch.Tensor:
        layers = [m for m in model.modules() if isinstance(m, BinaryDomainLayer)]
        ones = sum(m.bits().sum() for m in layers)
        total = sum(m.latent_weight.numel() for m in layers)
        return ones / total

    def __call__(self, model: nn.Module, ce: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.ones_fraction(model) - self.ec)
        if self.gamma == 0.0 or float(h.detach()) <= self.h_eps:
            return h * 0.0
        lam = (self.gamma * ce / (h * (1.0 - self.gamma))).detach()
        return lam * h


class BlockSparsityRegularizer:
    """Hardware-aware block sparsity (our addition, not the paper's): a group lasso on
    the B = 1 side of the latent weights of every PE x SIMD block,

        lambda * sum over layers of mean over blocks of || relu(w_block + margin) ||_2,

    pushes whole blocks below -margin (B = 0 everywhere in the block). mvtu_sparse
    neither stores nor visits such a block, so the layer needs fewer weight words and
    fewer schedule steps, i.e. fewer cycles at the same PE/SIMD or fewer lanes at the
    same throughput. Elementwise sparsity (the paper's regularizer) leaves almost no
    block empty. `blocks`: one (PE, SIMD) per binary-domain layer, in order, each
    dividing that layer's (out, in) features; a hardware folding whose blocks tile
    these (PE a divisor, or a multiple, of the trained one) keeps the empty ones.

    A convolution is a matrix [out, K*K*C] to the hardware, columns in (ky, kx, c) order
    (channels fastest); its blocks are cut from that matrix, and SIMD must divide C so
    that a SIMD chunk never straddles two kernel positions."""

    def __init__(self, blocks, block_lambda: float = 0.03, block_margin: float = 0.05):
        self.blocks = [tuple(int(v) for v in b) for b in blocks]
        if any(len(b) != 2 or min(b) < 1 for b in self.blocks):
            raise BnnforgeError(f"blocks must be [PE, SIMD] pairs of positive integers, got {blocks}")
        self.lam, self.margin = float(block_lambda), float(block_margin)

    def _layers(self, model):
        layers = [m for m in model.modules() if isinstance(m, BinaryDomainLayer)]
        if len(layers) != len(self.blocks):
            raise BnnforgeError(f"blocks gives {len(self.blocks)} [PE, SIMD] pairs for {len(layers)} "
                                "binary-domain layers")
        for i, (l, (pe, simd)) in enumerate(zip(layers, self.blocks)):
            rows, cols = l.hw_matrix(l.latent_weight).shape
            if rows % pe or cols % simd:
                raise BnnforgeError(f"blocks[{i}] = [{pe}, {simd}] does not tile layer {i} ({rows} x {cols})")
            if isinstance(l, BinaryDomainConv2d) and l.in_channels % simd:
                raise BnnforgeError(
                    f"blocks[{i}] = [{pe}, {simd}]: layer {i} is a {l.kernel_size}x{l.kernel_size} convolution "
                    f"over {l.in_channels} channels; SIMD must divide the channel count so that a SIMD "
                    "chunk never straddles two kernel positions")
        return layers

    @staticmethod
    def _split(layer, t, pe, simd):
        """`t` (shaped like layer's weight) as [row blocks, column blocks, pe * simd]."""
        w = layer.hw_matrix(t)
        mh, mw = w.shape
        return w.reshape(mh // pe, pe, mw // simd, simd).permute(0, 2, 1, 3).reshape(mh // pe, mw // simd, -1)

    @torch.no_grad()
    def occupancy(self, model) -> list[float]:
        """Per layer, the fraction of blocks holding a 1 of B (what mvtu_sparse stores)."""
        return [float((self._split(l, l.latent_weight > 0, pe, simd).any(-1)).float().mean())
                for l, (pe, simd) in zip(self._layers(model), self.blocks)]

    def __call__(self, model: nn.Module, ce: torch.Tensor | None = None) -> torch.Tensor:
        terms = [self._split(l, F.relu(l.latent_weight + self.margin), pe, simd)
                 .pow(2).sum(-1).add(1e-12).sqrt().mean()
                 for l, (pe, simd) in zip(self._layers(model), self.blocks)]
        return self.lam * torch.stack(terms).sum()


def hidden_block(in_f: int, out_f: int, q: int = 8, latent_clip: float = 1.5, act: str = "bipolar",
                 **_) -> list[nn.Module]:
    """BinaryDomainLinear -> BatchNorm -> 1-bit activation (bipolar by default)."""
    return [BinaryDomainLinear(in_f, out_f, q=q, latent_clip=latent_clip), nn.BatchNorm1d(out_f),
            binary_activation(act, out_f)]


def conv_block(in_c: int, out_c: int, padding: int = 0, q: int = 8, latent_clip: float = 1.5,
               act: str = "bipolar", **_) -> list[nn.Module]:
    """BinaryDomainConv2d (3x3) -> BatchNorm -> 1-bit activation; also for the first conv
    (multi-bit image input): the {m, m + q} integer weights take any input width."""
    return [BinaryDomainConv2d(in_c, out_c, 3, padding=padding, q=q, latent_clip=latent_clip),
            nn.BatchNorm2d(out_c), binary_activation(act, out_c)]
