"""Random residual Brevitas networks: the graph compiler's tests and the fuzz benchmark
(`benchmarks/fuzz.py --residual`).

The residual idiom bnnforge compiles (Brevitas' own QuantBasicBlock style): both
inputs of every Add come out of one shared activation quantizer instance, so the add
is an integer add; the shortcut is the identity or a strided 1x1 binary conv with
BatchNorm quantized by that same quantizer; the sum is requantized (optionally after a
BatchNorm, FTBNN-style) by that quantizer again before anything reads it. Every knob a
test varies is an argument: activation bits k (1: {0,1} or {-1,+1}), convolutional or
fully-connected blocks, identity or downsampling shortcuts, the operand order of the
Add, a BatchNorm after the add.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from bnnforge.models.methods.margin import KBitActQuant
from bnnforge.fuzz import CHECK_IMAGES, Mismatch
from bnnforge.models.quantizers import BinaryWeightNoScale, BipolarActQuant, Uint4InputQuant, UnipolarActQuant


def activation(k: int, kind: str = "unipolar", max_val: float = 2.0) -> nn.Module:
    if k == 1:
        quant = BipolarActQuant if kind == "bipolar" else UnipolarActQuant
        return QuantIdentity(act_quant=quant, return_quant_tensor=False)
    return QuantIdentity(act_quant=KBitActQuant.let(bit_width=k, max_val=max_val), return_quant_tensor=False)


def _bconv(cin, cout, k, stride=1, pad=0):
    return QuantConv2d(cin, cout, k, stride=stride, padding=pad, bias=False, weight_quant=BinaryWeightNoScale)


class ResidualBlock(nn.Module):
    """x -> conv-BN-act -> conv-BN-q  (+)  shortcut(x) -> [BN] -> q; q is shared."""

    def __init__(self, cin, cout, stride, q, k, kind, conv=True, shortcut_first=False, bn_after_add=False):
        super().__init__()
        kernel, pad = (1, 0) if kind == "bipolar" else (3, 1)   # zero padding needs a 0 level
        if conv:
            self.c1, self.c2 = _bconv(cin, cout, kernel, stride, pad), _bconv(cout, cout, kernel, 1, pad)
            self.b1, self.b2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)
        else:
            self.c1 = QuantLinear(cin, cout, bias=False, weight_quant=BinaryWeightNoScale)
            self.c2 = QuantLinear(cout, cout, bias=False, weight_quant=BinaryWeightNoScale)
            self.b1, self.b2 = nn.BatchNorm1d(cout), nn.BatchNorm1d(cout)
        self.a1 = activation(k, kind)
        self.q = q
        self.down = None
        if stride != 1 or cin != cout:
            if conv:
                self.down = nn.Sequential(_bconv(cin, cout, 1, stride), nn.BatchNorm2d(cout))
            else:
                self.down = nn.Sequential(QuantLinear(cin, cout, bias=False, weight_quant=BinaryWeightNoScale),
                                          nn.BatchNorm1d(cout))
        self.shortcut_first = shortcut_first
        self.post = (nn.BatchNorm2d(cout) if conv else nn.BatchNorm1d(cout)) if bn_after_add else nn.Identity()

    def forward(self, x):
        y = self.q(self.b2(self.c2(self.a1(self.b1(self.c1(x))))))
        s = x if self.down is None else self.q(self.down(x))
        z = s + y if self.shortcut_first else y + s
        return self.q(self.post(z))


class ResidualNet(nn.Module):
    """Input quantizer (4-bit), a stem layer, residual blocks, a binary classifier."""

    def __init__(self, k=2, kind="unipolar", conv=True, width=4, blocks=("id", "down"), dim=8,
                 shortcut_first=False, bn_after_add=False, classes=10):
        super().__init__()
        self.conv = conv
        self.input_shape = (1, dim, dim) if conv else (dim * dim,)
        self.inq = QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False)
        q = activation(k, kind)
        if conv:
            kernel, pad = (1, 0) if kind == "bipolar" else (3, 1)
            self.stem = nn.Sequential(_bconv(1, width, kernel, 1, pad), nn.BatchNorm2d(width))
        else:
            self.stem = nn.Sequential(QuantLinear(dim * dim, width, bias=False, weight_quant=BinaryWeightNoScale),
                                      nn.BatchNorm1d(width))
        self.q0 = q
        layers, c, size = [], width, dim
        for b in blocks:
            down = b == "down"
            cout = 2 * c if down else c
            stride = 2 if down and conv else 1
            q_next = activation(k, kind) if down else q
            if down:
                # a new stage has its own shared quantizer: the block's branch, shortcut and sum
                q = q_next
            layers.append(ResidualBlock(c, cout, stride, q, k, kind, conv, shortcut_first, bn_after_add))
            c = cout
            size = size // stride
        self.blocks = nn.ModuleList(layers)
        self.fc = QuantLinear(c * size * size if conv else c, classes, bias=False, weight_quant=BinaryWeightNoScale)

    def forward(self, x):
        x = self.inq(x)
        if not self.conv:
            x = torch.flatten(x, 1)
        x = self.q0(self.stem(x))
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(x, 1))


def random_batchnorm(model: nn.Module, seed: int) -> None:
    """Random statistics and affine parameters, negative scales included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]:
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=g) * 2)
            bn.running_var.copy_(torch.rand(n, generator=g) * 6 + 0.5)
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g))


def random_residual_net(seed: int = 0, **kw) -> ResidualNet:
    torch.manual_seed(seed)
    m = ResidualNet(**kw)
    random_batchnorm(m, seed)
    return m.eval()


# ---------------------------------------------------------------------------
# the fuzz benchmark's residual cases

@dataclass
class ResidualCase:
    """ResidualNet arguments and the run's knobs. `folding` None: drawn from the seed
    when the case runs (PE | MH, SIMD | MW and | the channels of its window); {}: every
    unit at PE = SIMD = 1. `image_rows`: the subset of the 64 check images (shrinking)."""
    seed: int
    net: dict
    label_select: bool
    p_gap: float = 0.0
    p_stall: float = 0.0
    folding: dict | None = None
    image_rows: list | None = None
    fifo_depth: int = 2
    generator: str = "residual"

    def to_json(self) -> dict:
        d = asdict(self)
        d["net"] = dict(self.net, blocks=list(self.net["blocks"]))
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ResidualCase":
        d = dict(d)
        d["net"] = dict(d["net"], blocks=tuple(d["net"]["blocks"]))
        return cls(**d)

    @property
    def n_images(self) -> int:
        return CHECK_IMAGES if self.image_rows is None else len(self.image_rows)

    def summary(self) -> str:
        n = self.net
        k = f"k{n['k']}" + (f" {n['kind']}" if n["k"] == 1 else "")
        fold = "drawn" if self.folding is None else ("1/1" if not self.folding else
                                                     ",".join(f"{v['PE']}/{v['SIMD']}" for v in self.folding.values()))
        return (f"seed={self.seed} residual {'conv' if n['conv'] else 'fc'} {k} width={n['width']} dim={n['dim']} "
                f"blocks={list(n['blocks'])}" + (" shortcut_first" if n["shortcut_first"] else "")
                + (" bn_after_add" if n["bn_after_add"] else "") + f" -> {n['classes']} "
                f"{'label' if self.label_select else 'acc'} PE/SIMD={fold} gap/stall={self.p_gap}/{self.p_stall} "
                f"images={self.n_images}")


def random_residual_case(seed: int) -> ResidualCase:
    rng = np.random.default_rng(10_000 + seed)
    k = int(rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 8]))
    kind = str(rng.choice(["unipolar", "bipolar"])) if k == 1 else "unipolar"
    conv = bool(rng.random() < 0.6)
    blocks = tuple(str(b) for b in rng.choice(["id", "down"], size=int(rng.integers(1, 4))))
    net = dict(k=k, kind=kind, conv=conv, width=int(rng.choice([2, 4, 8])) if conv else int(rng.choice([8, 16, 32])),
               blocks=blocks, dim=8 if conv else int(rng.choice([4, 8])),
               shortcut_first=bool(rng.random() < 0.5), bn_after_add=bool(rng.random() < 0.5),
               classes=int(rng.choice([4, 10])))
    return ResidualCase(seed=seed, net=net, label_select=bool(rng.random() < 0.5),
                        p_gap=float(rng.choice([0.0, 0.3, 0.7])), p_stall=float(rng.choice([0.0, 0.3, 0.7])))


def residual_coverage(case: ResidualCase) -> dict:
    net = case.net
    k = net["k"]
    # the operators every residual network exercises (StreamFork, StreamAdd and the
    # Thresholding unit on the sum), then the finer kinds
    kinds = {"stream_fork", "stream_add", "thresholding",
             f"res_act_{'k1_' + net['kind'] if k == 1 else ('k2-4' if k <= 4 else 'k5-8')}",
             "res_conv" if net["conv"] else "res_fc"}
    kinds |= {"res_shortcut_identity" if b == "id" else "res_shortcut_down" for b in net["blocks"]}
    corners = set()
    if net["bn_after_add"]:
        kinds.add("res_bn_after_add")
    if net["shortcut_first"]:
        corners.add("shortcut_first")
    corners.add("label_select" if case.label_select else "accumulators")
    corners.add(f"{len(net['blocks'])}_blocks")
    return {"kinds": kinds, "corners": corners}


def residual_case_inputs(case: ResidualCase, model) -> np.ndarray:
    images = np.random.default_rng(case.seed).random((CHECK_IMAGES,) + model.input_shape, dtype=np.float32)
    return images if case.image_rows is None else images[case.image_rows]


def _draw_folding(case: ResidualCase, hw) -> dict:
    from bnnforge.hw.hwgraph import get_attrs

    rng = np.random.default_rng(case.seed)
    window = {n.output[0]: get_attrs(n)["C"] for n in hw.graph.node if n.op_type == "SlidingWindow"}
    folding = {}
    for n in hw.graph.node:
        if n.op_type == "MVTU":
            a = get_attrs(n)
            c = window.get(n.input[0], a["MW"])
            folding[n.name] = {"PE": int(rng.choice([d for d in range(1, a["MH"] + 1) if a["MH"] % d == 0])),
                               "SIMD": int(rng.choice([d for d in range(1, c + 1) if c % d == 0 and a["MW"] % d == 0]))}
    return folding


def run_residual_case(case: ResidualCase, workdir, rtl: bool = True, reproducer_dir=None) -> dict:
    """Export a random residual net, build it at its folding (drawn from the seed unless
    given), and check torch == streamlined == hardware graph == golden and RTL == golden
    beat for beat under the case's stalls (bnnforge.fuzz). A failure is saved as a
    reproducer under `reproducer_dir`."""
    from bnnforge.fuzz import build_artifacts, check_artifacts, save_reproducer, torch_logits
    from bnnforge.models.export import export_qonnx

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"seed": case.seed, "ok": True, "kind": None, "reason": None, "reproducer": None, "rtl": rtl}
    path, images, logits, folding = workdir / "model.onnx", None, None, case.folding
    try:
        try:
            m = random_residual_net(seed=case.seed, **case.net)
            images = residual_case_inputs(case, m)
            logits = torch_logits(m, images)
            export_qonnx(m, path, (1,) + m.input_shape)
            if folding is None:
                _, hw, _ = build_artifacts(path, {}, workdir / "plain", case.label_select, case.fifo_depth,
                                           rtl=False)
                folding = _draw_folding(case, hw)
        except Exception as e:
            raise Mismatch("exception_export", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
        result["folding"] = folding
        result.update(check_artifacts(path, folding, images, logits, label_select=case.label_select,
                                      fifo_depth=case.fifo_depth, workdir=workdir, rtl=rtl, p_gap=case.p_gap,
                                      p_stall=case.p_stall, sim_seed=case.seed))
    except Mismatch as mm:
        result.update(ok=False, kind=mm.kind, reason=mm.reason)
        if mm.__cause__ is not None:
            result["traceback"] = "".join(traceback.format_exception(mm.__cause__))[-4000:]
        if reproducer_dir is not None:
            saved = replace(case, folding=folding if folding is not None else case.folding)
            result["reproducer"] = str(save_reproducer(saved, Path(reproducer_dir), result, path, images, logits,
                                                       name=f"residual_seed{case.seed}_{mm.kind}"))
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


# ---------------------------------------------------------------------------
# shrinking

def residual_shrink_candidates(case: ResidualCase):
    """Smaller variants: structure first (blocks, shortcuts, bits, widths), then the
    knobs (BatchNorm after the add, operand order, classes, stalls, folding), then inputs."""
    n = case.net
    blocks = list(n["blocks"])

    def net(**kw):
        return replace(case, net=dict(n, **kw))

    for i in range(len(blocks)):
        yield f"drop_block_{i}", net(blocks=tuple(blocks[:i] + blocks[i + 1:]))
    for i, b in enumerate(blocks):
        if b == "down":
            yield f"identity_{i}", net(blocks=tuple(blocks[:i] + ["id"] + blocks[i + 1:]))
    if n["k"] > 2:
        yield "k2", net(k=2)
    if n["k"] == 2:
        yield "k1", net(k=1, kind="unipolar")
    if n["width"] > 1:
        yield "half_width", net(width=n["width"] // 2)
    if n["dim"] > 4 and (not n["conv"] or n["dim"] // 2 >= 2 ** blocks.count("down")):
        yield "half_dim", net(dim=n["dim"] // 2)
    if n["bn_after_add"]:
        yield "no_bn_after_add", net(bn_after_add=False)
    if n["shortcut_first"]:
        yield "branch_first", net(shortcut_first=False)
    if n["classes"] > 2:
        yield "classes_2", net(classes=2)
    if case.p_gap or case.p_stall:
        yield "no_stalls", replace(case, p_gap=0.0, p_stall=0.0)
    if case.folding is None or case.folding:
        yield "fold_1", replace(case, folding={})
    rows = list(case.image_rows) if case.image_rows is not None else list(range(CHECK_IMAGES))
    if len(rows) > 1:
        half = len(rows) // 2
        yield "first_half", replace(case, image_rows=rows[:half])
        yield "second_half", replace(case, image_rows=rows[half:])


def residual_case_size(case: ResidualCase) -> tuple:
    n = case.net
    return (len(n["blocks"]), list(n["blocks"]).count("down"), n["k"], n["width"], n["dim"], n["bn_after_add"],
            n["shortcut_first"], n["classes"], bool(case.p_gap or case.p_stall), case.folding != {},
            case.n_images)


def shrink_and_save_residual(case: ResidualCase, failure: dict, store, workdir, rtl: bool = True,
                             injected_fault: str | None = None, log=None) -> Path:
    """Shrink a failing residual case and save the smallest as a reproducer under
    `store` (the regression store the tests replay)."""
    from bnnforge.fuzz import greedy_shrink, save_reproducer, torch_logits

    workdir = Path(workdir)
    small, result, steps = greedy_shrink(case, failure, residual_shrink_candidates, residual_case_size,
                                         run_residual_case, workdir / "shrink", rtl=rtl, log=log)
    final = workdir / "final"
    shutil.rmtree(final, ignore_errors=True)
    result = run_residual_case(small, final, rtl=rtl)
    if result["ok"] or result["kind"] != failure["kind"]:
        raise RuntimeError(f"shrunk case no longer fails as {failure['kind']}: {result}")
    small = replace(small, folding=result["folding"])
    m = random_residual_net(seed=small.seed, **small.net)
    images = residual_case_inputs(small, m)
    name = f"residual_seed{small.seed}_{result['kind']}" + (f"_{injected_fault}" if injected_fault else "")
    return save_reproducer(small, Path(store), result, final / "model.onnx", images, torch_logits(m, images),
                           name=name,
                           extra={"injected_fault": injected_fault, "shrink_steps": steps,
                                  "original": case.to_json(), "original_reason": failure["reason"]})

