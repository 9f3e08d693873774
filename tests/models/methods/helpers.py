"""Shared helpers for the method tests."""
import numpy as np
import torch

from bnnforge.models.methods import build_method_model
from bnnforge.models.topologies import randomize_batchnorm


@torch.no_grad()
def random_method_model(name, seed=0, **params):
    """A method model with random BatchNorm statistics and random per-channel extras
    (thresholds, scales, shifts), so exports see every sign case, not only identities."""
    torch.manual_seed(seed)
    m = build_method_model(name, **params)
    g = torch.Generator().manual_seed(seed)
    randomize_batchnorm(m, g)
    for mod in m.modules():
        for attr, sd in (("threshold", 0.3), ("shift", 0.3), ("log_scale", 0.5)):
            p = getattr(mod, attr, None)
            if isinstance(p, torch.nn.Parameter) and p.requires_grad and p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * sd)
    return m.eval()


def images(n, seed=0, shape=(1, 8, 8)):
    return np.random.default_rng(seed).random((n,) + tuple(shape), dtype=np.float32)


@torch.no_grad()
def random_ftbnn_model(seed=0, **build_kw):
    """Random FTBNN model (build_method_model("ftbnn", **build_kw)), random BatchNorm, and
    FPReLUs whose slopes are both negative on about a third of the channels (sign flips)."""
    from bnnforge.models.methods.ftbnn import FPReLU

    torch.manual_seed(seed)
    m = build_method_model("ftbnn", **build_kw)
    g = torch.Generator().manual_seed(seed)
    for f in m.modules():
        if isinstance(f, FPReLU):
            neg = torch.rand(f.a.shape, generator=g) < 0.33
            f.a.copy_(torch.where(neg, -f.a, f.a))
            f.b.copy_(torch.where(neg, -f.b, f.b))
    randomize_batchnorm(m, g)
    return m.eval()
