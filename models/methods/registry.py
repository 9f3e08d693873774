"""Method names -> digits-MLP models with that method's hidden blocks and training hooks.

`build_method_model(name, hidden=(256, 256), **params)` returns a `MethodNet`; `params`
are the method's named parameters (defaults in each method module's DEFAULTS and in
configs/methods/<name>.yaml). `configs/methods/<name>.yaml` holds the paper defaults.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn
from brevitas.nn import QuantIdentity, QuantLinear

from models.errors import BnnforgeError
from models.layers import ChannelThreshold, binary_activation
from models.quantizers import BinaryWeightNoScale, UnipolarActQuant
from . import binary_domain, ftbnn, margin, sdbnn, sibnn
from .common import MethodNet, MLPSpec

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "methods"

METHODS = ("bipolar", "unipolar", "sibnn", "binary_domain", "sdbnn", "sdbnn_se", "margin", "ftbnn")


def _baseline_block(act):
    def block(in_f, out_f, **_):
        return [QuantLinear(in_f, out_f, bias=False, weight_quant=BinaryWeightNoScale), nn.BatchNorm1d(out_f),
                binary_activation(act, out_f)]
    return block


def _ftbnn_block(in_f, out_f, first=False, **p):
    act = p.get("act", "bipolar")
    blk = ftbnn.hidden_block(in_f, out_f, first=first, **p)
    if act == "unipolar":
        # threshold first, so the FPReLU sits right in front of the {0,1} quantizer at 0
        lin, bn, fp = blk[0], blk[1], blk[2]
        blk = [lin, bn, ChannelThreshold(out_f), fp,
               QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False)]
    return blk


_BLOCKS = {
    "bipolar": (_baseline_block("bipolar"), {}, 1.0),
    "unipolar": (_baseline_block("unipolar"), {}, 1.0),
    "sibnn": (sibnn.hidden_block, sibnn.DEFAULTS, 1.0),
    "binary_domain": (binary_domain.hidden_block, binary_domain.DEFAULTS, 1.5),
    "sdbnn": (sdbnn.hidden_block, sdbnn.DEFAULTS, 1.0),
    "sdbnn_se": (sdbnn.hidden_block, dict(sdbnn.DEFAULTS, asd="se"), 1.0),
    "margin": (margin.hidden_block, margin.DEFAULTS, 1.0),
    "ftbnn": (_ftbnn_block, ftbnn.DEFAULTS, 1.0),
}


def method_defaults(name: str) -> dict:
    if name not in _BLOCKS:
        raise BnnforgeError(f"unknown method {name!r}; choices: {', '.join(METHODS)}")
    return dict(_BLOCKS[name][1])


def build_method_model(name: str, hidden=(256, 256), input_shape=(1, 8, 8), num_classes: int = 10,
                       **params) -> MethodNet:
    """The digits MLP (4-bit inputs -> hidden -> num_classes) with `name`'s hidden blocks."""
    if name not in _BLOCKS:
        raise BnnforgeError(f"unknown method {name!r}; choices: {', '.join(METHODS)}")
    block, defaults, clip = _BLOCKS[name]
    unknown = set(params) - set(defaults) - {"ede_t_min", "ede_t_max", "latent_clip"}
    if unknown:
        raise BnnforgeError(f"method {name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(defaults)) or 'none'}")
    p = dict(defaults, **params)
    spec = MLPSpec(input_shape=tuple(input_shape), hidden=tuple(int(h) for h in hidden),
                   num_classes=int(num_classes))
    c, h, w = spec.input_shape
    fan_in, blocks = c * h * w, []
    for i, width in enumerate(spec.hidden):
        kw = dict(p, first=True) if (name == "ftbnn" and i == 0) else p
        blocks.append(block(fan_in, width, **kw))
        fan_in = width
    model = MethodNet(name, blocks, fan_in, spec, config=p, latent_clip=p.get("latent_clip", clip))
    if name == "binary_domain":
        model.add_regularizer(binary_domain.SparsityRegularizer(p["ec"], p["gamma"], p["h_eps"]))
        if p.get("blocks"):
            reg = binary_domain.BlockSparsityRegularizer(p["blocks"], p["block_lambda"], p["block_margin"])
            reg._layers(model)  # a blocks list that does not tile the layers fails here, not mid-training
            model.add_regularizer(reg)
    if name == "margin":
        model.add_regularizer(margin.BinaryL2Regularizer(p["l2_lambda"]))
    return model


def load_method_config(name_or_path) -> dict:
    """configs/methods/<name>.yaml (or a path to a YAML/JSON file) as a dict with keys
    method, hidden, params, train."""
    import json

    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise BnnforgeError(f"{path}: method config not found")
    text = path.read_text()
    cfg = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(cfg, dict) or "method" not in cfg:
        raise BnnforgeError(f"{path}: a method config is a mapping with at least 'method'")
    cfg.setdefault("params", {})
    cfg.setdefault("train", {})
    cfg.setdefault("hidden", [256, 256])
    return cfg
