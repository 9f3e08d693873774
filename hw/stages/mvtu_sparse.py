"""MVTUSparse -> mvtu_sparse.v: the block-sparse unit (binary-domain `sparse01` and grouped
`pm1_blocks` weights); its block schedule and images come from hw.memfiles_sparse."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import attr_str, initializer
from bnnforge.hw.memory_style import sparse_weights_in_bram
from bnnforge.hw.stages import BuildContext, StageKind, register
from bnnforge.hw.stages.mvtu import MAX_OUT_BITS, OUT_MODES, matrix_lag, mvtu_pipe_every, out_bits
from bnnforge.hw.verilog_names import comment_safe


@register
class MVTUSparseStage(StageKind):
    op_type = "MVTUSparse"
    module = "mvtu_sparse"
    files = ("popcount.v", "popcount_compressor.v", "adder_tree.v", "sign_resize.v", "pipe_delay.v", "mvtu_sparse.v")
    layer = True

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        q, stage = _sparse_stage(ctx.model, node, a, ctx.out_dir, ctx.layer_index, ctx.clk_period_ns)
        return stage

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), out_bits(a)

    def lag(self, stage: dict, ideal: int) -> float:
        return matrix_lag(stage, ideal)


def _sparse_stage(model: onnx.ModelProto, node, a: dict, out_dir: Path, i: int,
                  clk_period_ns: float | None = None) -> tuple[dict, dict]:
    """An MVTUSparse node -> mvtu_sparse: schedule and memory images for its PE/SIMD
    built and written by hw.memfiles_sparse (files layer<i>_weights/_schedule/_rowconst/
    _thresholds.mem, named from the layer index only), RTL parameters, stage entry.
    Cycles per vector: max(SF, STEPS) (docs/hw_interfaces.md), times the pixels of a
    sliding window in front. The target clock sets the trees' pipelining as in mvtu."""
    from bnnforge.hw.memfiles_sparse import sparse_layer

    name = comment_safe(node.name)
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    if mh % pe or mw % simd:
        raise BnnforgeError(f"node {name!r}: folding PE={pe}, SIMD={simd} does not divide MH={mh}, MW={mw}")
    if not 2 <= acc <= 32:
        raise BnnforgeError(f"node {name!r}: acc_bits = {acc}; mvtu_sparse takes 2..32")
    kind = attr_str(a["input_kind"])
    if kind not in ("bipolar", "unipolar", "int"):
        raise BnnforgeError(f"node {name!r}: unknown input kind {kind!r}")
    out_name = attr_str(a.get("out_mode", "accumulator"))
    if out_name not in OUT_MODES:
        raise BnnforgeError(f"node {name!r}: unknown out_mode {out_name!r}")
    out_mode = OUT_MODES[out_name]
    ob = {0: 1, 1: acc, 2: int(a.get("out_bits", 1))}[out_mode]
    # mvtu's model of adder levels per clock bounds this unit too: Yosys sta at two levels
    # per clock, SIMD 4..64, every input and weight kind: 1.81-2.46 ns (model: 2.45)
    pipe_every = mvtu_pipe_every(simd, clk_period_ns, name)
    t = flip = None
    if out_mode != 1:
        if len(node.input) < 3:
            raise BnnforgeError(f"node {name!r}: out_mode {out_name} needs thresholds")
        t = initializer(model, node.input[2]).astype(np.int64)
        nt = (1 << ob) - 1
        if (out_mode == 0 and t.shape != (mh,)) or (out_mode == 2 and (not 1 <= ob <= MAX_OUT_BITS
                                                                       or t.shape != (mh, nt))):
            raise BnnforgeError(f"node {name!r}: thresholds of shape {t.shape} do not fit {mh} outputs "
                                f"of {ob} bit(s)")
        lo, hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
        t2 = t.reshape(mh, -1)
        bad = np.nonzero(np.any((t2 < lo) | (t2 > hi), axis=1))[0]
        if len(bad):
            row = t2[bad[0]]
            raise BnnforgeError(f"node {name!r}: threshold {int(row[(row < lo) | (row > hi)][0])} of output "
                                f"{int(bad[0])} overflows the {acc}-bit accumulator range [{lo}, {hi}]")
        if out_mode == 2 and np.any(np.diff(t2, axis=1) < 0):
            raise BnnforgeError(f"node {name!r}: multi-thresholds must be sorted per output")
        if len(node.input) > 3 and node.input[3]:
            flip = initializer(model, node.input[3]).astype(np.int64).reshape(-1)
            if flip.shape != (mh,) or not np.all((flip == 0) | (flip == 1)):
                raise BnnforgeError(f"node {name!r}: output flips must be {mh} bits")
    elif len(node.input) > 3:
        raise BnnforgeError(f"node {name!r}: output flips need a threshold output")
    sl = sparse_layer(model, node)
    for k, v in (("NNZ", sl.nnz), ("STEPS", sl.steps)):
        if k in a and int(a[k]) != v:
            raise BnnforgeError(f"node {name!r}: attribute {k} = {a[k]} does not match its weights at "
                                f"PE={pe}, SIMD={simd} ({v}); rerun apply_folding")
    rtl = sl.write(out_dir, kind, acc, thresholds=t, prefix=f"layer{int(i)}_")
    ib = a["input_bits"] if kind == "int" else 1
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=rtl["MODE"], INPUT_BITS=ib,
                  INPUT_SIGNED=int(a["input_signed"]) if kind == "int" else 0, ACC_BITS=acc, OUT_MODE=out_mode)
    if out_mode == 2:
        params["OUT_BITS"] = ob
    params.update({k: rtl[k] for k in ("WEIGHT_KIND", "WEIGHT_M", "WEIGHT_Q", "NNZ", "STEPS")})
    params["WEIGHT_RAM"] = int(sparse_weights_in_bram(sl.nnz, pe * simd))
    params["PIPE_EVERY"] = pipe_every
    params.update({k: rtl[k] for k in ("WEIGHT_FILE", "SCHED_FILE")})
    for k in ("THRESH_FILE", "ROWC_FILE"):
        if rtl[k]:
            params[k] = rtl[k]
    if flip is not None and flip.any():
        params["OUT_FLIP"] = int("".join(str(int(b)) for b in flip[::-1]), 2)  # bit o = output o
    pixels = int(a.get("pixels", 1))   # behind a sliding window: one vector per output pixel
    stats = sl.stats()                 # cycle figures per vector: per frame below
    for k in ("scheduled_cycles", "cycles_per_frame", "dense_cycles_per_frame"):
        stats[k] *= pixels
    cycles = stats["cycles_per_frame"]
    q = dict(index=i, kind="sparse", source=name)
    q.update({k: v for k, v in params.items() if k != "OUT_FLIP"})
    q.update(OUT_BITS=params.get("OUT_BITS", 1), THRESH_FILE=params.get("THRESH_FILE", ""),
             ROWC_FILE=params.get("ROWC_FILE", ""), OUT_FLIP_COUNT=int(flip.sum()) if flip is not None else 0,
             pixels=pixels, in_width=simd * ib, out_width=pe * ob, stats=stats)
    stage = dict(kind="mvtu_sparse", module="mvtu_sparse", source=name, layer=q, params=params,
                 in_width=q["in_width"], out_width=q["out_width"], in_beats=pixels * mw // simd, cycles=cycles,
                 comment=f"{mw}x{mh}, SIMD {simd}, PE {pe}, mode {params['MODE']}, {rtl['WEIGHT_KIND']} "
                         f"m={rtl['WEIGHT_M']} q={rtl['WEIGHT_Q']}, {sl.nnz}/{sl.nf * sl.sf} blocks stored, "
                         f"{sl.steps} steps" + (f", {ob}-bit outputs" if out_mode == 2 else "")
                         + (f", {pixels} pixels" if pixels > 1 else ""))
    return q, stage
