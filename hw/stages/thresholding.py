"""Thresholding -> thresholding.v: a standalone requantizer (pipelined binary search over
sorted thresholds, k up to 8, per-channel output flips) after a residual add or behind an
accumulator output for activations wider than the mvtu's fused multi-threshold."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import attr_str, initializer
from bnnforge.hw.stages import BuildContext, StageKind, register
from bnnforge.hw.verilog_names import comment_safe


@register
class ThresholdingStage(StageKind):
    op_type = "Thresholding"
    module = "thresholding"
    files = ("thresholding.v",)

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        return _thresholding_stage(ctx.model, node, a, ctx.out_dir, ctx.stage_index)

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), int(a["OUT_BITS"])


def _thresholding_stage(model, node, a, out_dir: Path, index: int) -> dict:
    """Thresholding -> thresholding: the requantizer after a residual add; per-stage
    threshold images <stem>_s<s>_l<j>.mem named from the node's index only."""
    from bnnforge.hw.memfiles_thresholding import write_thresholding_images

    name = comment_safe(node.name)
    c, pe, k, ib, pixels = a["C"], a["PE"], a["OUT_BITS"], a["IN_BITS"], a["pixels"]
    if c % pe:
        raise BnnforgeError(f"node {name!r}: {pe} lanes do not divide its {c} channels")
    t = initializer(model, node.input[1]).astype(np.int64).reshape(c, -1)
    if t.shape[1] != (1 << k) - 1 or np.any(np.diff(t, axis=1) < 0):
        raise BnnforgeError(f"node {name!r}: thresholds must be {c} sorted rows of {(1 << k) - 1}")
    signed = int(a.get("SIGNED", 0))
    t_bits = max(signed_bits(int(t.min()), int(t.max())), ib + (0 if signed else 1))
    stem = f"stage{int(index)}_thresholds"   # named from the stage index only
    try:
        write_thresholding_images(out_dir, stem, t, pe, t_bits)
    except ValueError as e:
        raise BnnforgeError(f"node {name!r}: {e}") from None
    params = dict(LANES=pe, C=c, IN_BITS=ib, SIGNED=signed, OUT_BITS=k, T_BITS=t_bits, THRESH_PREFIX=stem)
    if len(node.input) > 2 and node.input[2]:
        flip = initializer(model, node.input[2]).astype(np.int64).reshape(-1)
        if flip.shape != (c,) or not np.all((flip == 0) | (flip == 1)):
            raise BnnforgeError(f"node {name!r}: output flips must be {c} bits")
        if flip.any():
            params["OUT_FLIP"] = int("".join(str(int(b)) for b in flip[::-1]), 2)   # bit c = channel c
    beats = pixels * c // pe
    return dict(kind="thresholding", module="thresholding",
                source=comment_safe(attr_str(a.get("source_node", node.name))),
                params=params, in_width=pe * ib, out_width=pe * k, in_beats=beats, cycles=beats,
                comment=f"requantize {ib}-bit sums to {k} bit(s), {c} channels x {pixels} pixels, {pe} lanes")


def signed_bits(lo: int, hi: int) -> int:
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits
