"""Method names -> digits-MLP (or small conv net) models with that method's blocks and
training hooks.

`build_method_model(name, hidden=(256, 256), conv=(), **params)` returns a `MethodNet`;
`params` are the method's named parameters (defaults in each method module's DEFAULTS
and in configs/methods/<name>.yaml). `configs/methods/<name>.yaml` holds the paper
defaults; `<name>_cnv.yaml` a small MNIST conv net for the conv-shaped methods.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from bnnforge.models.errors import BnnforgeError
from bnnforge.resources import method_config_dir
from bnnforge.models.layers import ChannelThreshold, binary_activation
from bnnforge.models.quantizers import BinaryWeightNoScale, UnipolarActQuant
from . import binary_domain, ftbnn, margin, sdbnn, sibnn
from .common import MethodNet, MLPSpec

CONFIG_DIR = method_config_dir()

METHODS = ("bipolar", "unipolar", "sibnn", "binary_domain", "sdbnn", "sdbnn_se", "margin", "ftbnn")
# Residual nets (models.residual) with a method's block: configs/methods/<name>.yaml holds
# their shape (stem, stages, act_bits, ...) in `params`, next to the block's parameters.
RESIDUAL_METHODS = {"sibnn_resnet": "sibnn", "ftbnn_resnet": "ftbnn"}
ALL_METHODS = METHODS + tuple(RESIDUAL_METHODS)


def _baseline_block(act):
    def block(in_f, out_f, **_):
        return [QuantLinear(in_f, out_f, bias=False, weight_quant=BinaryWeightNoScale), nn.BatchNorm1d(out_f),
                binary_activation(act, out_f)]
    return block


def _baseline_conv_block(act):
    def block(in_c, out_c, padding=0, **_):
        return [QuantConv2d(in_c, out_c, 3, padding=padding, bias=False, weight_quant=BinaryWeightNoScale),
                nn.BatchNorm2d(out_c), binary_activation(act, out_c)]
    return block


def _ftbnn_unipolar_order(blk, channels):
    """weight, norm, FPReLU, act -> weight, norm, threshold, FPReLU, {0,1} quantizer: the
    threshold first, so the FPReLU sits right in front of the {0,1} quantizer at 0."""
    layer, bn, fp = blk[0], blk[1], blk[2]
    return [layer, bn, ChannelThreshold(channels), fp,
            QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False)]


def _ftbnn_block(in_f, out_f, first=False, **p):
    blk = ftbnn.hidden_block(in_f, out_f, first=first, **p)
    return _ftbnn_unipolar_order(blk, out_f) if p.get("act", "bipolar") == "unipolar" else blk


def _ftbnn_conv_block(in_c, out_c, padding=0, first=False, **p):
    blk = ftbnn.conv_block(in_c, out_c, padding=padding, first=first, **p)
    return _ftbnn_unipolar_order(blk, out_c) if p.get("act", "bipolar") == "unipolar" else blk


# name -> (hidden block, conv block, parameter defaults, latent clip)
_BLOCKS = {
    "bipolar": (_baseline_block("bipolar"), _baseline_conv_block("bipolar"), {}, 1.0),
    "unipolar": (_baseline_block("unipolar"), _baseline_conv_block("unipolar"), {}, 1.0),
    "sibnn": (sibnn.hidden_block, sibnn.conv_block, sibnn.DEFAULTS, 1.0),
    "binary_domain": (binary_domain.hidden_block, binary_domain.conv_block, binary_domain.DEFAULTS, 1.5),
    "sdbnn": (sdbnn.hidden_block, sdbnn.conv_block, sdbnn.DEFAULTS, 1.0),
    "sdbnn_se": (sdbnn.hidden_block, sdbnn.conv_block, dict(sdbnn.DEFAULTS, asd="se"), 1.0),
    "margin": (margin.hidden_block, margin.conv_block, margin.DEFAULTS, 1.0),
    "ftbnn": (_ftbnn_block, _ftbnn_conv_block, ftbnn.DEFAULTS, 1.0),
}


def method_defaults(name: str) -> dict:
    if name not in _BLOCKS:
        raise BnnforgeError(f"unknown method {name!r}; choices: {', '.join(METHODS)}")
    return dict(_BLOCKS[name][2])


def _int_tuple(field: str, values) -> tuple:
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise BnnforgeError(f"{field} must be a list of integers, got {values!r}") from None


def _conv_output_shape(input_shape: tuple, conv: tuple, pool_after: tuple, conv_pad: int) -> tuple:
    """(C, H, W) after the convs and pools; BnnforgeError when a size drops below 1 or a
    pool does not tile its input."""
    c, h, w = input_shape
    for i, out_c in enumerate(conv):
        if out_c < 1:
            raise BnnforgeError(f"conv[{i}] = {out_c}: a conv needs at least one output channel")
        nh, nw = h - 2 + 2 * conv_pad, w - 2 + 2 * conv_pad
        if nh < 1 or nw < 1:
            raise BnnforgeError(f"conv {i}: a 3x3 convolution with padding {conv_pad} on a {h}x{w} map "
                                "leaves no output; use fewer convs or pools, or conv_pad 1")
        c, h, w = out_c, nh, nw
        if i in pool_after:
            if h % 2 or w % 2:
                raise BnnforgeError(f"pool after conv {i}: the 2x2 max pool needs an even map size, got {h}x{w}")
            h, w = h // 2, w // 2
    return c, h, w


def build_method_model(name: str, hidden=(256, 256), input_shape=(1, 8, 8), num_classes: int = 10,
                       conv=(), pool_after=(), conv_pad: int = 0, **params) -> MethodNet:
    """The digits MLP (4-bit inputs -> hidden -> num_classes) with `name`'s hidden blocks.

    With `conv` (output channels of 3x3 convs, stride 1, padding `conv_pad`) the convs,
    each in `name`'s conv block, come first, with a 2x2 max pool right after the
    activation of every conv whose index is in `pool_after`; `hidden` are then the
    fully-connected widths after the flatten."""
    if name not in _BLOCKS:
        raise BnnforgeError(f"unknown method {name!r}; choices: {', '.join(METHODS)}")
    block, conv_block, defaults, clip = _BLOCKS[name]
    unknown = set(params) - set(defaults) - {"ede_t_min", "ede_t_max", "latent_clip"}
    if unknown:
        raise BnnforgeError(f"method {name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(defaults)) or 'none'}")
    p = dict(defaults, **params)
    conv, pool_after = _int_tuple("conv", conv), _int_tuple("pool_after", pool_after)
    if not isinstance(conv_pad, int) or conv_pad < 0:
        raise BnnforgeError(f"conv_pad must be a non-negative integer, got {conv_pad!r}")
    if not conv and (pool_after or conv_pad):
        raise BnnforgeError("pool_after and conv_pad need convs: conv is empty")
    bad_pools = sorted(set(i for i in pool_after if not 0 <= i < len(conv)))
    if bad_pools or len(set(pool_after)) != len(pool_after):
        raise BnnforgeError(f"pool_after {list(pool_after)}: each entry must be a distinct conv index "
                            f"in 0..{len(conv) - 1}")
    spec = MLPSpec(input_shape=tuple(input_shape), hidden=tuple(int(h) for h in hidden),
                   num_classes=int(num_classes), kind="cnv" if conv else "fc", conv=conv,
                   pool_after=tuple(sorted(pool_after)), conv_pad=conv_pad)
    c, h, w = _conv_output_shape(spec.input_shape, conv, pool_after, conv_pad)
    conv_blocks, in_c = [], spec.input_shape[0]
    for i, out_c in enumerate(conv):
        try:
            blk = conv_block(in_c, out_c, padding=conv_pad, first=(i == 0), **p)
        except BnnforgeError as e:
            raise BnnforgeError(f"conv {i} ({in_c} -> {out_c} channels): {e}") from e
        conv_blocks.append(blk + ([nn.MaxPool2d(2)] if i in pool_after else []))
        in_c = out_c
    fan_in, blocks = c * h * w, []
    for i, width in enumerate(spec.hidden):
        # ftbnn: only the layer fed by the multi-bit image is left ungrouped
        kw = dict(p, first=True) if (name == "ftbnn" and i == 0 and not conv) else p
        try:
            blocks.append(block(fan_in, width, **kw))
        except BnnforgeError as e:
            raise BnnforgeError(f"hidden layer {i} ({fan_in} -> {width}): {e}") from e
        fan_in = width
    model = MethodNet(name, blocks, fan_in, spec, config=p, latent_clip=p.get("latent_clip", clip),
                      conv_blocks=conv_blocks)
    if conv and blocks and isinstance(blocks[0][0], binary_domain.BinaryDomainLinear):
        # the hardware streams the flattened map as (y, x, c), not torch's (c, y, x)
        blocks[0][0].input_chw = (c, h, w)
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
    method, hidden, conv, pool_after, conv_pad, params, train."""
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
    cfg.setdefault("conv", [])
    cfg.setdefault("pool_after", [])
    cfg.setdefault("conv_pad", 0)
    return cfg


def build_residual_method_model(name: str, input_shape=(1, 28, 28), num_classes: int = 10, **params):
    """The residual net (models.residual.ResidualNet) of method `name` (sibnn_resnet, ftbnn_resnet);
    `params`: its shape keys and block parameters (models.residual.SHAPE_KEYS, METHOD_DEFAULTS)."""
    from bnnforge.models.residual import build_residual_model

    if name not in RESIDUAL_METHODS:
        raise BnnforgeError(f"unknown residual method {name!r}; choices: {', '.join(RESIDUAL_METHODS)}")
    block = RESIDUAL_METHODS[name]
    if params.get("block", block) != block:
        raise BnnforgeError(f"method {name!r}: block {params['block']!r} does not match; the block is {block!r}")
    params = dict(params, block=block)
    return build_residual_model(input_shape=input_shape, num_classes=num_classes, method=name, **params)
