"""MVTU -> mvtu.v: the dense matrix-vector-threshold unit (XNOR/AND/add-subtract lanes,
popcount tree, accumulator, threshold or k-bit multi-threshold or raw output), weights and
thresholds as $readmemh images layer<i>_weights.mem / layer<i>_thresholds.mem."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import MODES, attr_str, initializer
from bnnforge.hw.stages import PIPELINE_SLACK_CYCLES, BuildContext, StageKind, register
from bnnforge.hw.verilog_names import comment_safe
from bnnforge.hw.memfiles import fold_words, multithreshold_words, threshold_words, weight_words, write_memh
from bnnforge.hw.memory_style import weight_fold, weights_in_bram

# MVTU out_mode -> mvtu OUT_MODE (docs/hw_interfaces.md); k-bit outputs up to MAX_OUT_BITS
OUT_MODES = {"threshold": 0, "accumulator": 1, "multithreshold": 2}
MAX_OUT_BITS = 4


def _check_mvtu(node, a, w, t):
    name = comment_safe(node.name)
    mw, mh, pe, simd = a["MW"], a["MH"], a["PE"], a["SIMD"]
    if mh % pe or mw % simd:
        raise BnnforgeError(f"node {name!r}: folding PE={pe}, SIMD={simd} does not divide MH={mh}, MW={mw}")
    if w.shape != (mh, mw) or not np.all((w == 0) | (w == 1)):
        raise BnnforgeError(f"node {name!r}: weights must be a {mh}x{mw} array of bits")
    if attr_str(a["mode"]) not in MODES:
        raise BnnforgeError(f"node {name!r}: unknown mode {attr_str(a['mode'])!r}")
    out_mode = attr_str(a.get("out_mode", "accumulator"))
    if out_mode not in OUT_MODES:
        raise BnnforgeError(f"node {name!r}: unknown out_mode {out_mode!r}")
    if out_mode == "multithreshold":
        k = int(a.get("out_bits", 0))
        if not 1 <= k <= MAX_OUT_BITS:
            raise BnnforgeError(f"node {name!r}: out_bits = {k}; the multi-threshold output supports "
                                f"1..{MAX_OUT_BITS} bits (2^k-1 comparators per output)")
        if t is None or t.shape != (mh, (1 << k) - 1) or np.any(np.diff(t, axis=1) < 0):
            raise BnnforgeError(f"node {name!r}: multi-thresholds must be {mh} sorted rows of {(1 << k) - 1}")
    if t is not None:
        lo, hi = -(1 << (a["acc_bits"] - 1)), (1 << (a["acc_bits"] - 1)) - 1
        t2 = t.reshape(len(t), -1)
        bad = np.nonzero(np.any((t2 < lo) | (t2 > hi), axis=1))[0]
        if len(bad):
            row = t2[bad[0]]
            v = row[(row < lo) | (row > hi)][0]
            raise BnnforgeError(
                f"node {name!r}: threshold {int(v)} of output {int(bad[0])} overflows the "
                f"{a['acc_bits']}-bit accumulator range [{lo}, {hi}]")


# Yosys `sta` (xc7 cells, no routing) of a pipelined binary mvtu (PE 4, weights in block
# RAM, ACC_BITS 12) at SIMD 64, measured with hw/synth.py logic_delay: 2.053 ns at one
# adder level per clock (the last tree segment plus the chunk offset; the counters,
# accumulate and compare are shorter), 2.457 at two, 2.303 at three (Yosys merges that
# segment into one multi-operand adder), 3.177 at four (the whole tree of 11 counts):
# 0.40 ns per further level bounds every one of them from above.
STA_ONE_LEVEL_NS = 2.053
STA_PER_LEVEL_NS = 0.40
# On a 7-series part routing adds about as much delay again as the cells (hw/synth.py
# logic_delay): the cells may take this share of the clock period.
LOGIC_SHARE = 0.5
DEFAULT_CLK_PERIOD_NS = 5.0   # no clock given: the 200 MHz class (stage budget 2.5 ns)


def mvtu_pipe_every(simd: int, clk_period_ns: float | None = None, node_name: str = "") -> int:
    """Adder levels per clock in an MVTU's chunk-sum tree (its PIPE_EVERY), from the target
    clock: as many levels as fit LOGIC_SHARE of the period by the sta model above. A clock
    whose budget is shorter than one level per clock, the shortest the unit can be
    pipelined, is refused naming the node."""
    period = DEFAULT_CLK_PERIOD_NS if clk_period_ns is None else float(clk_period_ns)
    budget = period * LOGIC_SHARE
    if budget < STA_ONE_LEVEL_NS:
        raise BnnforgeError(
            f"node {comment_safe(node_name)!r}: synth_clk_period_ns = {period:g} leaves {budget:.2f} ns of logic "
            f"per clock; the MVTU (SIMD {simd}) pipelined one adder level per clock needs "
            f"{STA_ONE_LEVEL_NS} ns (Yosys sta, xc7 cells): choose a period of at least "
            f"{STA_ONE_LEVEL_NS / LOGIC_SHARE:.2f} ns")
    extra = int((budget - STA_ONE_LEVEL_NS) / STA_PER_LEVEL_NS + 1e-9)
    # more levels than the deepest tree (SIMD*2^IB leaves at most) change nothing: capped
    # so that the parameter, and the generated RTL, stay the same for every longer clock
    return min(1 + extra, max(1, (simd - 1).bit_length()))


def out_bits(a: dict) -> int:
    mode = attr_str(a.get("out_mode", "accumulator"))
    return {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(mode, int(a["acc_bits"]))


def matrix_lag(stage: dict, ideal: int) -> float:
    """A matrix unit waits for one whole input vector (and its replay) before its first output."""
    return PIPELINE_SLACK_CYCLES / ideal + 2 / max(1, stage["layer"]["pixels"])


@register
class MVTUStage(StageKind):
    op_type = "MVTU"
    module = "mvtu"
    files = ("popcount.v", "popcount_compressor.v", "adder_tree.v", "pipe_delay.v", "stream_fifo.v", "credit_queue.v", "mvtu.v")
    layer = True

    def build(self, ctx: BuildContext, node, a: dict) -> dict:
        q, stage = _mvtu_stage(ctx.model, node, a, ctx.out_dir, ctx.layer_index, ctx.clk_period_ns)
        return stage

    def out_format(self, a: dict) -> tuple[int, int]:
        return int(a["PE"]), out_bits(a)

    def lag(self, stage: dict, ideal: int) -> float:
        return matrix_lag(stage, ideal)


def _mvtu_stage(model: onnx.ModelProto, node, a: dict, out_dir: Path, i: int,
                clk_period_ns: float | None = None) -> tuple[dict, dict]:
    """An MVTU node -> mvtu: weight and threshold images (layer<i>_*.mem), parameters, stage."""
    w = initializer(model, node.input[1]).astype(np.int64)
    t = initializer(model, node.input[2]).astype(np.int64) if len(node.input) > 2 else None
    _check_mvtu(node, a, w, t)
    pipe_every = mvtu_pipe_every(a["SIMD"], clk_period_ns, node.name)
    wfile, tfile = f"layer{i}_weights.mem", f"layer{i}_thresholds.mem"
    width, depth = a["PE"] * a["SIMD"], (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"])
    wram = weights_in_bram(a)
    fold = weight_fold(width, depth)[0] if wram else 1   # pipe_every >= 1: mvtu.v WEIGHT_FOLD applies
    write_memh(out_dir / wfile, fold_words(weight_words(w, a["PE"], a["SIMD"]), fold, width), fold * width)
    out_mode = OUT_MODES[attr_str(a["out_mode"])]
    ob = {0: 1, 1: a["acc_bits"], 2: int(a.get("out_bits", 1))}[out_mode]  # bits per output
    thr_out = out_mode != 1
    if out_mode == 0:
        write_memh(out_dir / tfile, threshold_words(t, a["PE"], a["acc_bits"]), a["PE"] * a["acc_bits"])
    elif out_mode == 2:  # k-bit activations: 2^k-1 thresholds per output (docs/hw_interfaces.md)
        nt = (1 << ob) - 1
        write_memh(out_dir / tfile, multithreshold_words(t, a["PE"], a["acc_bits"]),
                   a["PE"] * nt * a["acc_bits"])
    ib = a["input_bits"] if attr_str(a["mode"]) == "addsub" else 1
    pixels = a.get("pixels", 1)
    q = dict(
        index=i, source=comment_safe(node.name), MW=a["MW"], MH=a["MH"], PE=a["PE"], SIMD=a["SIMD"],
        MODE=MODES[attr_str(a["mode"])], INPUT_BITS=ib, INPUT_SIGNED=int(a["input_signed"]) if ib > 1 else 0,
        ACC_BITS=a["acc_bits"], OUT_MODE=out_mode, OUT_BITS=ob if out_mode == 2 else 1,
        WEIGHT_RAM=int(wram), PIPE_EVERY=pipe_every,
        WEIGHT_FILE=wfile, THRESH_FILE=tfile if thr_out else "", pixels=pixels,
        in_width=a["SIMD"] * ib, out_width=a["PE"] * ob)
    offset = int(a.get("input_offset", 0))
    if offset:  # levels of a signed k-bit activation: the unit subtracts the offset
        q["INPUT_OFFSET"] = offset
    if fold > 1:
        q["WEIGHT_FOLD"] = fold
    pkeys = ("MW", "MH", "PE", "SIMD", "MODE", "INPUT_BITS", "INPUT_SIGNED") \
        + (("INPUT_OFFSET",) if offset else ()) + ("ACC_BITS", "OUT_MODE") \
        + (("OUT_BITS",) if out_mode == 2 else ()) + ("WEIGHT_RAM",) \
        + (("WEIGHT_FOLD",) if fold > 1 else ()) + ("PIPE_EVERY", "WEIGHT_FILE", "THRESH_FILE")
    stage = dict(
        kind="mvtu", module="mvtu", source=q["source"], layer=q,
        params={k: q[k] for k in pkeys},
        in_width=q["in_width"], out_width=q["out_width"], in_beats=pixels * a["MW"] // a["SIMD"],
        cycles=pixels * (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"]),
        comment=f"{a['MW']}x{a['MH']}, SIMD {a['SIMD']}, PE {a['PE']}, mode {q['MODE']}"
                + (f", {ob}-bit outputs" if out_mode == 2 else "")
                + (f", {pixels} pixels" if pixels > 1 else ""))
    return q, stage
