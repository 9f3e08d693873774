"""Differential fuzzing over every operator the compiler supports (the graph fuzzer).

A case (`random_graph_case(seed)`, deterministic, no torch needed) is a chain of layers:
an input quantizer (1-bit bipolar or unipolar, uint4 or int8), 0..3 convolutions
(every square kernel 1..5, stride 1..3, zero padding 0..2 where the stream can carry
the pad value, dense / grouped `pm1_blocks` / binary-domain `sparse01` / k-bit (2..4-bit
integer, `mvtu_kbit`) weights, an optional square max pool 2 or 3), 0..2 fully-connected
layers (dense / grouped / binary-domain / k-bit), then the {-1,+1} classifier with label select or raw accumulators.
Every hidden layer has a BatchNorm (random statistics, plus the FC fuzzer's edge cases:
negative and zero gammas, channels forced on or off, constant and zeroed weight rows)
and one activation of four kinds: bipolar, unipolar, unsigned k-bit, signed k-bit
(k = 2..4, narrow or not). Foldings are random divisors with the corners PE = SIMD = 1
and fully parallel drawn often.

Checks (bnnforge.fuzz.check_artifacts): streamlined graph == hardware graph on
integers, golden last-layer accumulators == an affine image of torch's logits, golden
argmax == torch argmax (up to integer ties), RTL == golden beat for beat (labels or
accumulators) under random input gaps and output stalls.

`coverage(case)` names the operator kinds and parameter corners a case exercises;
`shrink_graph_case` reduces a failing case (drop layers, pools, channels, kernel /
stride / padding, inputs, edits, folding factors) while it still fails the same way.
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import onnx

from bnnforge.fuzz import CHECK_IMAGES, Mismatch, check_artifacts, greedy_shrink, save_reproducer, torch_logits

# Bounds that keep one case cheap (a few seconds with the bulk harness).
MAX_PIXEL_CYCLES = 2048     # folding redrawn while pixels * NF * SF of a layer exceeds this
PAD_KINDS = ("unipolar", "uint", "int8")   # stream kinds whose pad value 0 is a level
INPUT_KINDS = ("bipolar", "unipolar", "uint4", "int8")
ACT_KINDS = ("bipolar", "unipolar", "uint", "int")
WEIGHT_KINDS = ("dense", "grouped", "binary_domain", "kbit")
# matrix units that take a signed (offset) input stream
OFFSET_INPUT_WEIGHTS = ("dense", "kbit")


@dataclass
class GraphCase:
    seed: int
    input_quant: str              # "bipolar" / "unipolar" / "uint4" / "int8"
    input_shape: tuple            # (C, H, W)
    layers: list                  # hidden layers (dicts, see random_graph_case)
    num_classes: int
    label_select: bool
    folding: dict                 # {"MVTU_i" | "MVTUSparse_i": {"PE", "SIMD"}}
    fifo_depth: int
    edits: list = field(default_factory=list)
    p_gap: float = 0.0
    p_stall: float = 0.0
    image_rows: list | None = None
    generator: str = "graph"

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "GraphCase":
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)

    @property
    def n_images(self) -> int:
        return CHECK_IMAGES if self.image_rows is None else len(self.image_rows)

    @property
    def n_layers(self) -> int:
        return len(self.layers) + 1

    def summary(self) -> str:
        parts = []
        for l in self.layers:
            w = {"dense": "", "grouped": f"g{l.get('groups', 1)}", "binary_domain": "bd",
                 "kbit": f"w{l.get('wbits')}" + ("n" if l.get("wnarrow") else "")}[l["weights"]]
            act = (l["act"] + (str(l["bits"]) if l["act"] in ("uint", "int") else "")
                   + ("n" if l.get("narrow") else ""))
            if l["op"] == "conv":
                parts.append(f"conv{l['k']}s{l['s']}p{l['pad']}{w}->{l['out']}:{act}"
                             + (f"+pool{l['pool']}" if l.get("pool") else ""))
            else:
                parts.append(f"fc{w}->{l['out']}:{act}")
        fold = ",".join(f"{v['PE']}/{v['SIMD']}" for v in self.folding.values())
        return (f"seed={self.seed} in={self.input_quant}{list(self.input_shape)} [{' '.join(parts)}] "
                f"-> {self.num_classes} {'label' if self.label_select else 'acc'} PE/SIMD={fold} "
                f"edits={[e['kind'] for e in self.edits]} images={self.n_images}")


# ---------------------------------------------------------------------------
# geometry: the shapes and hardware constraints of a case

def _stream_kind(kind: str) -> str:
    return {"uint4": "uint", "int8": "int8"}.get(kind, kind)


def layer_geometry(case: GraphCase) -> list[dict] | None:
    """Per matrix layer (hidden + last): node name, MH, MW, pixels, the divisibility
    the folding needs (pe_of, simd_of), and the kind it reads. None when the chain is
    not a valid network (a map too small, a pool that does not tile, a pad on a
    stream without a zero level, groups that do not divide)."""
    c, h, w = case.input_shape
    prev = _stream_kind(case.input_quant)
    prev_offset = False
    flat = False
    out = []
    for i, l in enumerate(case.layers):
        g = l.get("groups", 1) if l["weights"] == "grouped" else 1
        if l["weights"] not in OFFSET_INPUT_WEIGHTS and prev_offset:
            return None        # the block-sparse unit takes no input offset (refused by design)
        fan_in = c * (l.get("k", 1) ** 2 if l["op"] == "conv" else h * w)
        if l["weights"] == "binary_domain" and l["out"] * fan_in < 2:
            return None        # one weight is one level: not a two-level layer
        if l["op"] == "conv":
            if flat or h != w:
                return None
            k, s, p = l["k"], l["s"], l["pad"]
            if p and (prev not in PAD_KINDS or prev_offset):
                return None
            if k > h + 2 * p or k < 1 or s < 1:
                return None
            ofm = (h + 2 * p - k) // s + 1
            if ofm < 1 or c % g or l["out"] % g:
                return None
            name = _unit_name(l, g) + str(i)
            out.append(dict(name=name, MH=l["out"], MW=k * k * c, pixels=ofm * ofm,
                            pe_of=l["out"] // g, simd_of=c // g, reads=prev))
            c, h, w = l["out"], ofm, ofm
            pool = l.get("pool", 0)
            if pool:
                if h % pool:
                    return None
                h, w = h // pool, w // pool
        else:
            n_in = c * h * w
            if g > 1 and not flat and c > 1 and h * w > 1:
                return None    # groups of a channels-first flatten are not contiguous in the stream
            flat = True
            if n_in % g or l["out"] % g:
                return None
            name = _unit_name(l, g) + str(i)
            out.append(dict(name=name, MH=l["out"], MW=n_in, pixels=1, pe_of=l["out"] // g,
                            simd_of=n_in // g, reads=prev))
            c, h, w = l["out"], 1, 1
        prev = l["act"]
        prev_offset = l["act"] == "int"
    n_in = c * h * w
    out.append(dict(name=f"MVTU_{len(case.layers)}", MH=case.num_classes, MW=n_in, pixels=1,
                    pe_of=case.num_classes, simd_of=n_in, reads=prev))
    return out


def _unit_name(l: dict, groups: int) -> str:
    """The hardware node a hidden layer becomes (its folding key without the index)."""
    if l["weights"] == "kbit":
        return "MVTUKbit_"
    return "MVTUSparse_" if groups > 1 or l["weights"] == "binary_domain" else "MVTU_"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pick(rng, n: int, full: int) -> int:
    """A divisor of n (which divides `full`): 1 and the largest often (the corners)."""
    r = rng.random()
    if r < 0.25:
        return 1
    if r < 0.45:
        return n
    return int(rng.choice(_divisors(n)))


def random_folding(rng, geom: list[dict]) -> dict:
    folding = {}
    for g in geom:
        for _ in range(30):
            pe, simd = _pick(rng, g["pe_of"], g["MH"]), _pick(rng, g["simd_of"], g["MW"])
            if g["pixels"] * (g["MH"] // pe) * (g["MW"] // simd) <= MAX_PIXEL_CYCLES:
                break
        else:
            pe, simd = g["pe_of"], g["simd_of"]
        folding[g["name"]] = {"PE": int(pe), "SIMD": int(simd)}
    return folding


def refold(case: GraphCase, geom: list[dict]) -> dict:
    """The case's folding cut down to legal divisors of a (changed) geometry; a
    layer's old factors are found by its index."""
    old = {int(k.rsplit("_", 1)[1]): v for k, v in case.folding.items()}
    out = {}
    for i, g in enumerate(geom):
        f = old.get(i, {"PE": 1, "SIMD": 1})
        out[g["name"]] = {"PE": gcd(int(f["PE"]), g["pe_of"]), "SIMD": gcd(int(f["SIMD"]), g["simd_of"])}
    return out


def _act(rng) -> dict:
    kind = str(rng.choice(ACT_KINDS, p=[0.3, 0.3, 0.22, 0.18]))
    a = {"act": kind}
    if kind in ("uint", "int"):
        a["bits"] = int(rng.integers(2, 5))
        a["act_max"] = float(rng.choice([1.0, 2.0, 3.0, 6.0]))
    if kind == "int":
        a["narrow"] = bool(rng.random() < 0.5)
    return a


def _weights(rng, c_in: int, c_out: int, allow_groups: bool = True, allow_sparse: bool = True) -> dict:
    r = rng.random()
    common = [g for g in _divisors(gcd(c_in, c_out)) if g > 1]
    if r < 0.4 and common and allow_groups and allow_sparse:
        return {"weights": "grouped", "groups": int(rng.choice(common))}
    if r < 0.55 and allow_sparse:
        return {"weights": "binary_domain", "ratio": float(rng.choice([0.0, -0.3, -0.5, 0.25, -1.0])),
                "empty": float(rng.choice([0.0, 0.3, 0.6]))}
    if r < 0.8:
        # 4-bit weights narrow: a negative BatchNorm scale negates a row, and -(-8) is
        # not a 4-bit value (the compiler refuses that by design)
        bits = int(rng.integers(2, 5))
        return {"weights": "kbit", "wbits": bits, "wnarrow": bool(bits == 4 or rng.random() < 0.5),
                "scaling": str(rng.choice(["per_tensor", "per_channel"]))}
    return {"weights": "dense", "scaling": str(rng.choice(["none", "per_channel"]))}


def random_graph_case(seed: int) -> GraphCase:
    rng = np.random.default_rng([seed, 0x6A4F])
    input_quant = str(rng.choice(INPUT_KINDS, p=[0.3, 0.3, 0.25, 0.15]))
    n_conv = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))
    n_fc = int(rng.choice([0, 1, 2], p=[0.3, 0.35, 0.35]))
    if n_conv + n_fc == 0:
        n_fc = 1
    geom = None
    for _attempt in range(200):
        if n_conv:
            c, h = int(rng.integers(1, 4)), int(rng.integers(4, 11))
            shape = (c, h, h)
        else:
            c, h, w = int(rng.integers(1, 3)), int(rng.integers(2, 8)), int(rng.integers(2, 8))
            shape = (c, h, w)
        layers, prev, prev_offset = [], _stream_kind(input_quant), False
        for _ in range(n_conv):
            out_c = int(rng.integers(1, 9))
            if c > 1 and rng.random() < 0.3:
                out_c = c * int(rng.integers(1, 3))      # shares a divisor with c: groups possible
            pad_ok = prev in PAD_KINDS and not prev_offset
            pad = int(rng.choice([0, 0, 1, 2])) if pad_ok else 0
            k = int(rng.choice([1, 2, 3, 3, 4, 5]))
            s = int(rng.choice([1, 1, 1, 2, 3]))
            if k > h + 2 * pad:
                k = int(rng.integers(1, h + 2 * pad + 1))
            pad = min(pad, k - 1)
            ofm = (h + 2 * pad - k) // s + 1
            l = {"op": "conv", "out": out_c, "k": k, "s": s, "pad": pad,
                 **_weights(rng, c, out_c, allow_sparse=not prev_offset), **_act(rng)}
            if l["weights"] == "binary_domain":
                l.pop("empty")
            pools = [p for p in (2, 3) if ofm % p == 0]
            l["pool"] = int(rng.choice(pools)) if pools and rng.random() < 0.4 else 0
            layers.append(l)
            c, h = out_c, ofm // (l["pool"] or 1)
            prev, prev_offset = l["act"], l["act"] == "int"
        n_in = c * h * h if n_conv else int(np.prod(shape))
        # a grouped FC needs its groups contiguous in the stream: the hardware streams a
        # map channels-last, torch flattens it channels-first
        groups_ok = not n_conv and (shape[0] == 1 or shape[1] * shape[2] == 1)
        for _ in range(n_fc):
            out_f = int(rng.integers(2, 33))
            if groups_ok and rng.random() < 0.5:
                divs = [d for d in _divisors(n_in) if 1 < d <= 8]
                if divs:
                    out_f = int(rng.choice(divs)) * int(rng.integers(1, 5))
            l = {"op": "fc", "out": out_f, **_weights(rng, n_in, out_f, allow_groups=groups_ok,
                                                      allow_sparse=not prev_offset), **_act(rng)}
            layers.append(l)
            n_in, groups_ok, prev_offset = out_f, True, l["act"] == "int"
        case = GraphCase(seed=int(seed), input_quant=input_quant, input_shape=shape, layers=layers,
                         num_classes=int(rng.integers(2, 11)), label_select=bool(rng.random() < 0.5),
                         folding={}, fifo_depth=int(rng.choice([2, 2, 3, 4])))
        geom = layer_geometry(case)
        if geom is not None and all(g["MW"] <= 512 for g in geom):
            break
    else:
        raise RuntimeError(f"seed {seed}: no valid network drawn")
    case.folding = random_folding(rng, geom)
    case.edits = _random_edits(rng, case)
    p = float(rng.choice([0.0, 0.1, 0.3, 0.6]))
    case.p_gap, case.p_stall = p, float(rng.choice([0.0, p, 0.5]))
    return case


def _some(rng, n: int) -> list[int]:
    k = int(rng.integers(1, n + 1)) if rng.random() < 0.3 else int(rng.integers(1, max(2, n // 4 + 1)))
    return sorted(int(v) for v in rng.choice(n, size=min(k, n), replace=False))


def _random_edits(rng, case: GraphCase) -> list:
    edits = []
    for li, l in enumerate(case.layers):
        n = l["out"]
        if rng.random() < 0.12:
            edits.append({"kind": "neg_gamma", "layer": li})
        if rng.random() < 0.1:
            edits.append({"kind": "zero_gamma", "layer": li, "channels": _some(rng, n),
                          "beta": float(rng.choice([0.0, 0.5, -0.5]))})
        if rng.random() < 0.2:
            ch = _some(rng, n)
            edits.append({"kind": "always", "layer": li, "channels": ch,
                          "on": [bool(v) for v in rng.random(len(ch)) < 0.5]})
        if l["weights"] in OFFSET_INPUT_WEIGHTS and rng.random() < 0.15:
            edits.append({"kind": "const_row", "layer": li, "rows": _some(rng, n), "sign": int(rng.choice([-1, 1]))})
        if l["weights"] in OFFSET_INPUT_WEIGHTS and rng.random() < 0.15:
            whole = l.get("scaling", "none") in ("none", "per_tensor")
            edits.append({"kind": "zero_weights", "layer": li, "fraction": float(rng.uniform(0.05, 0.5)),
                          "rows": _some(rng, n) if whole and rng.random() < 0.5 else []})
    return edits


# ---------------------------------------------------------------------------
# coverage

def coverage(case: GraphCase) -> dict:
    """{"kinds": set of operator kinds, "corners": set of parameter corners} of a case."""
    kinds, corners = set(), set()
    kinds.add(f"input_{case.input_quant}")
    geom = layer_geometry(case) or []
    for i, l in enumerate(case.layers):
        wk = {"dense": "dense", "grouped": "pm1_blocks", "binary_domain": "sparse01", "kbit": "kbit"}[l["weights"]]
        kinds.add(f"{l['op']}_{wk}")
        if l["weights"] == "kbit":
            corners.add(f"weight_bits_{l['wbits']}" + ("_narrow" if l.get("wnarrow") else ""))
        kinds.add(f"act_{l['act']}")
        if l["act"] in ("uint", "int"):
            corners.add(f"act_{l['act']}{l['bits']}" + ("_narrow" if l.get("narrow") else ""))
        if l["op"] == "conv":
            kinds.add("conv")
            corners.update({f"kernel_{l['k']}", f"stride_{l['s']}", f"pad_{l['pad']}"})
            if l.get("pool"):
                kinds.add("maxpool")
                corners.add(f"pool_{l['pool']}")
        if l["weights"] == "dense" and l.get("scaling") == "per_channel":
            corners.add("weight_scale_per_channel")
        if l["weights"] == "grouped":
            corners.add(f"groups_{l['groups']}")
    for g in geom:
        f = case.folding.get(g["name"], {"PE": 1, "SIMD": 1})
        if f["PE"] == 1 and f["SIMD"] == 1:
            corners.add("fold_pe1_simd1")
        if f["PE"] == g["pe_of"] and f["SIMD"] == g["simd_of"]:
            corners.add("fold_full")
    kinds.add("out_label_select" if case.label_select else "out_accumulators")
    corners.update(f"edit_{e['kind']}" for e in case.edits)
    if case.p_stall or case.p_gap:
        corners.add("stalls")
    return {"kinds": kinds, "corners": corners}


# ---------------------------------------------------------------------------
# the torch model

def _signed_kbit(bits: int, narrow: bool, act_max: float):
    from brevitas.nn import QuantIdentity

    from bnnforge.models.methods.margin import KBitActQuant

    # KBitActQuant's power-of-two learned scale, made signed: equal integer sums stay
    # equal in float32 in the next layer, as in the hardware
    q = KBitActQuant.let(bit_width=int(bits), signed=True, narrow_range=bool(narrow),
                         min_val=-float(act_max), max_val=float(act_max))
    return QuantIdentity(act_quant=q, return_quant_tensor=False)


def _activation(l: dict, channels: int):
    from bnnforge.models.layers import binary_activation
    from bnnforge.models.methods.margin import kbit_activation

    if l["act"] in ("bipolar", "unipolar"):
        return binary_activation(l["act"], channels)
    if l["act"] == "uint":
        return kbit_activation(l["bits"], l["act_max"])
    return _signed_kbit(l["bits"], l.get("narrow", False), l["act_max"])


def _input_quant(kind: str):
    from brevitas.nn import QuantIdentity
    from torch import nn

    from bnnforge.models.layers import ChannelThreshold
    from bnnforge.models.quantizers import BipolarActQuant, Int8InputQuant, Uint4InputQuant, UnipolarActQuant
    from bnnforge.models.topologies import _Affine

    if kind == "uint4":
        return QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False)
    if kind == "int8":
        return nn.Sequential(_Affine(2.0, -1.0), QuantIdentity(act_quant=Int8InputQuant, return_quant_tensor=False))
    if kind == "bipolar":
        return nn.Sequential(_Affine(2.0, -1.0), QuantIdentity(act_quant=BipolarActQuant, return_quant_tensor=False))
    return nn.Sequential(ChannelThreshold(1, init=0.5, learnable=False),
                         QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False))


def _weight_layer(l: dict, c_in: int):
    import torch.nn.functional as F
    from brevitas.nn import QuantConv2d, QuantLinear

    from bnnforge.models.methods.binary_domain import BinaryDomainConv2d, BinaryDomainLinear
    from bnnforge.models.methods.ftbnn import GroupedBinaryLinear, grouped_binary_conv
    from bnnforge.models.topologies import WEIGHT_SCALINGS

    wk = l["weights"]
    if wk == "kbit":
        from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

        quant = {"per_tensor": Int8WeightPerTensorFloat, "per_channel": Int8WeightPerChannelFloat}[l["scaling"]]
        kw = dict(bias=False, weight_quant=quant, weight_bit_width=int(l["wbits"]),
                  weight_narrow_range=bool(l.get("wnarrow")))
        if l["op"] == "conv":
            return QuantConv2d(c_in, l["out"], l["k"], stride=l["s"], padding=l["pad"], **kw)
        return QuantLinear(c_in, l["out"], **kw)
    if l["op"] == "conv":
        k, s, p = l["k"], l["s"], l["pad"]
        if wk == "grouped":
            return grouped_binary_conv(c_in, l["out"], k, groups=l["groups"], stride=s, padding=p)
        if wk == "binary_domain":
            conv = BinaryDomainConv2d(c_in, l["out"], k, padding=p)
            if s != 1:
                # the method's conv is stride 1; the compiler takes any stride
                conv._weight_op = lambda x, w, _p=p, _s=s: F.conv2d(x, w, stride=_s, padding=_p)
            return conv
        return QuantConv2d(c_in, l["out"], k, stride=s, padding=p, bias=False,
                           weight_quant=WEIGHT_SCALINGS[l.get("scaling", "none")])
    if wk == "grouped":
        return GroupedBinaryLinear(c_in, l["out"], l["groups"])
    if wk == "binary_domain":
        return BinaryDomainLinear(c_in, l["out"])
    return QuantLinear(c_in, l["out"], bias=False, weight_quant=WEIGHT_SCALINGS[l.get("scaling", "none")])


def build_graph_model(case: GraphCase):
    import torch
    from brevitas.nn import QuantLinear
    from torch import nn

    from bnnforge.models.layers import ChannelThreshold, PositiveScalarAffine
    from bnnforge.models.methods.binary_domain import BinaryDomainLayer
    from bnnforge.models.quantizers import BinaryWeightNoScale
    from bnnforge.models.topologies import randomize_batchnorm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        mods = [_input_quant(case.input_quant)]
        weight_layers, bns = [], []
        c, h, w = case.input_shape
        flat = False
        for l in case.layers:
            if l["op"] == "fc" and not flat:
                mods.append(nn.Flatten())
                flat = True
            wl = _weight_layer(l, c * h * w if l["op"] == "fc" else c)
            bn = nn.BatchNorm2d(l["out"]) if l["op"] == "conv" else nn.BatchNorm1d(l["out"])
            mods += [wl, bn, _activation(l, l["out"])]
            weight_layers.append(wl)
            bns.append(bn)
            if l["op"] == "conv":
                c, h = l["out"], (h + 2 * l["pad"] - l["k"]) // l["s"] + 1
                if l.get("pool"):
                    mods.append(nn.MaxPool2d(l["pool"]))
                    h //= l["pool"]
                w = h
            else:
                c, h, w = l["out"], 1, 1
        if not flat:
            mods.append(nn.Flatten())
        fan_in = c * h * w
        mods += [QuantLinear(fan_in, case.num_classes, bias=False, weight_quant=BinaryWeightNoScale),
                 PositiveScalarAffine(init_scale=fan_in ** -0.5)]
        model = _FuzzNet(nn.Sequential(*mods))
    gen = torch.Generator().manual_seed(case.seed)
    with torch.no_grad():
        # binary-domain layers: a random domain {m, m+q} and whole empty (B = 0) regions
        for l, wl in zip(case.layers, weight_layers):
            if isinstance(wl, BinaryDomainLayer):
                wl.ratio.fill_(l.get("ratio", 0.0))
                lw = wl.latent_weight
                if l.get("empty", 0.0) > 0:
                    rows = torch.rand(lw.shape[0], generator=gen) < l["empty"]
                    lw[rows] = -lw[rows].abs() - 1e-3
                # both bit values present: with m = 0 and every bit 0 all weights are 0,
                # which tidy_up refuses today ("weights are not binary")
                flat_w = lw.view(-1)
                if bool((flat_w > 0).all()) or bool((flat_w <= 0).all()):
                    flat_w[0], flat_w[-1] = flat_w[0].abs() + 1e-3, -flat_w[-1].abs() - 1e-3
        calib = torch.rand((64,) + tuple(case.input_shape), generator=gen)
        randomize_batchnorm(model, gen, calibration=calib)
        for mod in model.modules():
            if isinstance(mod, ChannelThreshold) and mod.threshold.requires_grad:
                mod.threshold.add_(torch.randn(mod.threshold.shape, generator=gen) * 0.3)
        for name, p in model.named_parameters():
            if name.endswith("scaling_impl.value"):
                p.add_(torch.randn((), generator=gen) * 0.3)
        g = torch.Generator().manual_seed(case.seed + 1)
        for e in case.edits:
            li, k = e["layer"], e["kind"]
            bn = bns[li]
            if k == "neg_gamma":
                bn.weight.copy_(-bn.weight.abs() - 0.05)
            elif k == "zero_gamma":
                bn.weight[e["channels"]] = 0.0
                bn.bias[e["channels"]] = e["beta"]
            elif k == "always":
                big = 1e4 * (bn.running_var[e["channels"]] + bn.eps).sqrt().clamp(min=1.0)
                sign = torch.tensor([1.0 if on else -1.0 for on in e["on"]])
                bn.bias[e["channels"]] = sign * big
            elif k == "const_row":
                wt = weight_layers[li].weight
                rows = e["rows"]
                wt[rows] = e["sign"] * (torch.rand((len(rows),) + tuple(wt.shape[1:]), generator=g) * 0.9 + 0.05)
            elif k == "zero_weights":
                wt = weight_layers[li].weight
                mask = torch.rand(wt.shape, generator=g) < e["fraction"]
                if case.layers[li].get("scaling") == "per_channel":
                    mask.view(mask.shape[0], -1)[:, 0] = False
                wt[mask] = 0.0
                if e["rows"]:
                    wt[e["rows"]] = 0.0
            else:
                raise ValueError(f"unknown edit {k!r}")
    return model.eval()


def _fuzz_net_class():
    from torch import nn

    class FuzzNet(nn.Module):
        method = "fuzz"
        config: dict = {}

        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, x):
            return self.layers(x)

    return FuzzNet


def _FuzzNet(layers):
    global _FUZZ_NET
    if _FUZZ_NET is None:
        _FUZZ_NET = _fuzz_net_class()
    return _FUZZ_NET(layers)


_FUZZ_NET = None


def graph_case_images(case: GraphCase, n: int = CHECK_IMAGES) -> np.ndarray:
    rng = np.random.default_rng([case.seed, 0x1A6E])
    x = rng.random((n,) + tuple(case.input_shape), dtype=np.float32)
    special = [0.0, 1.0, 0.5]
    if case.input_quant == "uint4":
        special += [(k + 0.5) / 15 for k in range(15)]
    if case.input_quant == "int8":
        special += [(k + 0.5) / 256 + 0.5 for k in range(-128, 128, 17)]
    mask = rng.random(x.shape) < 0.15
    x[mask] = rng.choice(np.array(special, dtype=np.float32), size=int(mask.sum()))
    return x if case.image_rows is None else x[list(case.image_rows)]


def export_graph_case(case: GraphCase, path: Path):
    """(images, torch logits) of the case; its QONNX model written to `path`."""
    from bnnforge.models.methods.export import export_method_qonnx

    model = build_graph_model(case)
    images = graph_case_images(case)
    logits = torch_logits(model, images)
    export_method_qonnx(model, path, (1,) + tuple(case.input_shape))
    return images, logits


def unit_folding(onnx_path: Path, folding: dict, workdir: Path) -> dict:
    """The case's folding keyed by the matrix units the compiler actually emits. The
    unit follows the weights' values, not only the layer's quantizer: a 2-bit layer whose
    quantized weights take two levels is a binary-domain `MVTUSparse`, a ternary one with
    whole-block zeros a grouped one. Layer i's unit is `<kind>_i` whatever its kind."""
    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config
    from bnnforge.finn_flows.operators import for_hw

    cfg = load_config(None, model=str(onnx_path), output_dir=str(workdir), steps=["tidy_up", "streamline",
                      "convert_to_hw"], name="probe")
    build(cfg, progress=False)
    hw = onnx.load(str(workdir / "intermediate_models" / "02_convert_to_hw.onnx"))
    units = {n.name.rsplit("_", 1)[1]: n.name for n in hw.graph.node
             if for_hw(n.op_type) is not None and for_hw(n.op_type).folding_keys == ("PE", "SIMD")}
    shutil.rmtree(workdir, ignore_errors=True)
    return {units.get(k.rsplit("_", 1)[1], k): v for k, v in folding.items()}


def run_graph_case(case: GraphCase, workdir, rtl: bool = True, reproducer_dir=None,
                   keep_sim_build: bool = False) -> dict:
    """Run one graph case in `workdir`: {"ok", "kind", "reason", "reproducer", "seconds",
    "rtl_frames", ...}. A failure is saved as a reproducer under `reproducer_dir`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"seed": case.seed, "ok": True, "kind": None, "reason": None, "reproducer": None, "rtl": rtl}
    images = logits = None
    onnx_path = workdir / "model.onnx"
    try:
        try:
            images, logits = export_graph_case(case, onnx_path)
        except Exception as e:
            first_line = str(e).splitlines()[0][:300] if str(e) else ""
            raise Mismatch("exception_export", f"{type(e).__name__}: {first_line}") from e
        try:
            folding = unit_folding(onnx_path, case.folding, workdir / "probe")
        except Exception as e:
            raise Mismatch("exception_build", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
        result.update(check_artifacts(onnx_path, folding, images, logits, label_select=case.label_select,
                                      fifo_depth=case.fifo_depth, workdir=workdir, rtl=rtl, p_gap=case.p_gap,
                                      p_stall=case.p_stall, sim_seed=case.seed, keep_sim_build=keep_sim_build))
    except Mismatch as m:
        result.update(ok=False, kind=m.kind, reason=m.reason)
        if m.__cause__ is not None:
            result["traceback"] = "".join(traceback.format_exception(m.__cause__))[-4000:]
        if reproducer_dir is not None:
            result["reproducer"] = str(save_reproducer(case, Path(reproducer_dir), result, onnx_path,
                                                       images, logits))
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


# ---------------------------------------------------------------------------
# shrinking

def _with(case: GraphCase, **kw) -> GraphCase:
    d = case.to_json()
    d.update(kw)
    return GraphCase.from_json(json.loads(json.dumps(d)))


def _restructure(case: GraphCase, layers: list, layer_map: dict | None = None, **kw) -> GraphCase | None:
    """`case` with new hidden layers (and other fields); edits and folding carried over
    by `layer_map` (old index -> new) and cut to the new sizes. None when invalid."""
    c = _with(case, layers=layers, **kw)
    if layer_map is None:
        layer_map = {i: i for i in range(len(layers))}
    old_fold = {int(k.rsplit("_", 1)[1]): v for k, v in case.folding.items()}
    moved = {layer_map.get(i, None): f for i, f in old_fold.items()}
    moved[len(layers)] = old_fold.get(len(case.layers), {"PE": 1, "SIMD": 1})
    c.folding = {f"X_{i}": f for i, f in moved.items() if i is not None}
    geom = layer_geometry(c)
    if geom is None:
        return None
    c.folding = refold(c, geom)
    edits = []
    for e in case.edits:
        li = layer_map.get(e["layer"])
        if li is None:
            continue
        n = layers[li]["out"]
        e = dict(e, layer=li)
        for key in ("channels", "rows"):
            if key in e:
                keep = [j for j, ch in enumerate(e[key]) if ch < n]
                if e["kind"] == "always":
                    e["on"] = [e["on"][j] for j in keep]
                e[key] = [e[key][j] for j in keep]
        if e["kind"] in ("zero_gamma", "always", "const_row") and not e.get("channels", e.get("rows")):
            continue
        if e["kind"] in ("const_row", "zero_weights") and layers[li]["weights"] not in OFFSET_INPUT_WEIGHTS:
            continue
        edits.append(e)
    c.edits = edits
    return c


def graph_shrink_candidates(case: GraphCase):
    """Smaller variants of `case`: the structure first (with all inputs a smaller network
    is more likely to still meet the failing corner), then inputs, edits and folding."""
    n = case.n_images
    rows = list(case.image_rows) if case.image_rows is not None else list(range(CHECK_IMAGES))
    L = case.layers
    for i in range(len(L)):
        layer_map = {j: (j if j < i else j - 1) for j in range(len(L)) if j != i}
        yield f"drop_layer_{i}", _restructure(case, L[:i] + L[i + 1:], layer_map)
    for i, l in enumerate(L):
        def edit(**kw):
            return _restructure(case, L[:i] + [dict(l, **kw)] + L[i + 1:])
        if l.get("pool"):
            yield f"drop_pool_{i}", edit(pool=0)
        if l["weights"] != "dense":
            yield f"dense_{i}", edit(weights="dense", scaling="none")
        if l["weights"] == "kbit" and l["wbits"] > 2:
            yield f"wbits2_{i}", edit(wbits=2)
        g = l.get("groups", 1) if l["weights"] == "grouped" else 1
        for new in sorted({g, l["out"] // 2, 1}):
            if 1 <= new < l["out"] and new % g == 0 and (l["op"] == "conv" or new >= 2):
                yield f"out_{i}_{new}", edit(out=new)
        if l["op"] == "conv":
            if l["pad"]:
                yield f"pad0_{i}", edit(pad=0)
            if l["s"] > 1:
                yield f"stride1_{i}", edit(s=1)
            if l["k"] > 1:
                yield f"kernel1_{i}", edit(k=1, pad=0)
        if l["act"] in ("uint", "int") and l["bits"] > 2:
            yield f"bits2_{i}", edit(bits=2)
    for new in sorted({2, case.num_classes // 2}):
        if 2 <= new < case.num_classes:
            yield f"classes_{new}", _restructure(case, L, num_classes=new)
    c, h, w = case.input_shape
    shapes = [(1, h, w), (c, max(1, h - 1), max(1, w - 1)), (c, max(1, h // 2), max(1, w // 2))]
    for s in shapes:
        if s[0] * s[1] * s[2] < c * h * w:
            yield f"input_{s[0]}x{s[1]}x{s[2]}", _restructure(case, L, input_shape=list(s))
    if n > 1:
        yield "images_half_a", _with(case, image_rows=rows[: n // 2])
        yield "images_half_b", _with(case, image_rows=rows[n // 2:])
    if 1 < n <= 8:
        for r in rows:
            yield f"image_{r}", _with(case, image_rows=[r])
    for i, e in enumerate(case.edits):
        yield f"drop_edit_{e['kind']}", _with(case, edits=case.edits[:i] + case.edits[i + 1:])
    one = {"PE": 1, "SIMD": 1}
    if any(f != one for f in case.folding.values()):
        yield "fold_1", _with(case, folding={k: dict(one) for k in case.folding})
        for k, f in case.folding.items():
            if f != one and len(case.folding) > 1:
                yield f"fold_1_{k}", _with(case, folding=dict(case.folding, **{k: dict(one)}))
    if case.p_gap or case.p_stall:
        yield "no_stalls", _with(case, p_gap=0.0, p_stall=0.0)
    if case.fifo_depth != 2:
        yield "fifo_2", _with(case, fifo_depth=2)


def graph_case_size(case: GraphCase) -> tuple:
    geom = layer_geometry(case) or []
    return (case.n_layers, case.n_images, sum(g["MH"] * g["MW"] * g["pixels"] for g in geom),
            sum(l.get("pool", 0) > 0 or l["weights"] != "dense" for l in case.layers), len(case.edits),
            sum(f["PE"] * f["SIMD"] > 1 for f in case.folding.values()), case.p_gap + case.p_stall,
            case.fifo_depth)


def shrink_graph_case(case: GraphCase, failure: dict, workdir, rtl: bool = True, max_trials: int = 200,
                      log=None) -> tuple[GraphCase, dict, list[str]]:
    return greedy_shrink(case, failure, graph_shrink_candidates, graph_case_size, run_graph_case, workdir,
                         rtl=rtl, max_trials=max_trials, log=log)


def shrink_and_save_graph(case: GraphCase, failure: dict, store, workdir, rtl: bool = True,
                          injected_fault: str | None = None, log=None) -> Path:
    workdir = Path(workdir)
    small, result, steps = shrink_graph_case(case, failure, workdir / "shrink", rtl=rtl, log=log)
    final = workdir / "final"
    shutil.rmtree(final, ignore_errors=True)
    result = run_graph_case(small, final, rtl=rtl)
    if result["ok"] or result["kind"] != failure["kind"]:
        raise RuntimeError(f"shrunk case no longer fails as {failure['kind']}: {result}")
    name = f"graph_seed{small.seed}_{result['kind']}" + (f"_{injected_fault}" if injected_fault else "")
    images, logits = export_graph_case(small, final / "model.onnx")
    return save_reproducer(small, Path(store), result, final / "model.onnx", images, logits, name=name,
                           extra={"injected_fault": injected_fault, "shrink_steps": steps,
                                  "original": case.to_json(), "original_reason": failure["reason"],
                                  "generator": "graph"})
