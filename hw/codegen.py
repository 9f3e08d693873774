"""Verilog code generation: hardware-layer ONNX -> a readable top level, the library
modules it uses, and $readmemh memory images.

Nothing from the ONNX file reaches an identifier or a file name: instances and
files are named from layer indices, the top from a sanitized user-given name, and
ONNX node names appear only in comments after sanitizing. Block-sparse layers
(MVTUSparse) become mvtu_sparse instances whose schedule and images come from
hw.memfiles_sparse (see _sparse_stage).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.resources import rtl_dir
from bnnforge.hw.hwgraph import MODES, attr_str, get_attrs, initializer
from bnnforge.hw.memory_style import sparse_weights_in_bram, weights_in_bram
from bnnforge.hw.memfiles import multithreshold_words, threshold_words, weight_words, write_memh

RTL_DIR = rtl_dir()
# MVTU out_mode -> mvtu OUT_MODE (docs/hw_interfaces.md); k-bit outputs up to MAX_OUT_BITS
OUT_MODES = {"threshold": 0, "accumulator": 1, "multithreshold": 2}
MAX_OUT_BITS = 4

VERILOG_KEYWORDS = set("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign default
defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule endprimitive
endspecify endtable endtask event for force forever fork function generate genvar highz0 highz1 if
ifnone incdir include initial inout input instance integer join large liblist library localparam
macromodule medium module nand negedge nmos nor noshowcancelled not notif0 notif1 or output parameter
pmos posedge primitive pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real
realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small
specify specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1
triand trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
logic bit byte int shortint longint struct union enum typedef class interface program package
""".split())


def sanitize_identifier(name: str, fallback: str = "bnn") -> str:
    """A safe Verilog-2005 identifier: [A-Za-z_][A-Za-z0-9_]*, no keyword, <= 48 chars."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", str(name).encode("ascii", "replace").decode())
    s = re.sub(r"_+", "_", s).strip("_")[:48]
    if not s:
        s = fallback
    if not (s[0].isalpha() or s[0] == "_"):
        s = f"n_{s}"
    if s.lower() in VERILOG_KEYWORDS:
        s = f"{s}_m"
    return s


def comment_safe(text: str) -> str:
    """Text that cannot end a comment or a line early: printable ASCII only."""
    s = str(text).encode("ascii", "replace").decode()
    return re.sub(r"[^ -~]|\*/|/\*", "?", s)[:80]


STAGE_OPS = ("MVTU", "MVTUSparse", "SlidingWindow", "StreamingMaxPool", "StreamAdd", "Thresholding", "StreamFork")
# library files each stage kind needs beyond the always-present stream plumbing
STAGE_FILES = {"MVTU": ["popcount.v", "adder_tree.v", "mvtu.v"],
               "MVTUSparse": ["popcount.v", "adder_tree.v", "sign_resize.v", "mvtu_sparse.v"],
               "SlidingWindow": ["sliding_window.v"],
               "StreamingMaxPool": ["maxpool_bin.v"],
               "StreamAdd": ["stream_add.v"],
               "Thresholding": ["thresholding.v"],
               "StreamFork": ["stream_fork.v"],
               "LabelSelect": ["label_select.v"]}
BASE_FILES = ["stream_fifo.v", "stream_dwc.v"]


def _layers(model: onnx.ModelProto):
    out = []
    for node in model.graph.node:
        if node.op_type not in STAGE_OPS + ("LabelSelect",):
            raise BnnforgeError(f"node {comment_safe(node.name)!r}: op {node.op_type} has no Verilog module")
        out.append((node, get_attrs(node)))
    if not out:
        raise BnnforgeError("hardware graph is empty")
    if not any(n.op_type in ("MVTU", "MVTUSparse") for n, _ in out):
        raise BnnforgeError("hardware graph has no MVTU layer")
    for k, (node, _) in enumerate(out[:-1]):
        if node.op_type == "LabelSelect":
            raise BnnforgeError(f"node {comment_safe(node.name)!r}: LabelSelect must be the last node")
    return out


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


def _window_stage(node, a) -> dict:
    name = comment_safe(node.name)
    c, simd = a["C"], a["SIMD"]
    if c % simd:
        raise BnnforgeError(f"node {name!r}: SIMD = {simd} does not divide the {c} channels")
    return dict(
        kind="window", module="sliding_window", source=comment_safe(a.get("source_node", node.name)),
        params=dict(IFM_DIM=a["IFM_DIM"], C=c, K=a["K"], S=a["S"], PAD=a["PAD"], EB=a["EB"], SIMD=simd),
        in_width=simd * a["EB"], out_width=simd * a["EB"],
        in_beats=a["IFM_DIM"] ** 2 * c // simd,
        cycles=max(a["OFM_DIM"] ** 2 * a["K"] ** 2 * c // simd, a["IFM_DIM"] ** 2 * c // simd),
        comment=f"{a['K']}x{a['K']} window, stride {a['S']}, pad {a['PAD']} over {a['IFM_DIM']}x{a['IFM_DIM']}x{c}"
                f" -> {a['OFM_DIM']}x{a['OFM_DIM']} pixels, SIMD {simd}")


def _pool_stage(node, a) -> dict:
    name = comment_safe(node.name)
    c, simd, p, dim = a["C"], a["SIMD"], a["P"], a["IFM_DIM"]
    if c % simd or dim % p:
        raise BnnforgeError(f"node {name!r}: SIMD {simd} must divide C {c} and P {p} must divide IFM_DIM {dim}")
    return dict(
        kind="pool", module="maxpool_bin", source=name,
        params=dict(IFM_DIM=dim, C=c, P=p, SIMD=simd, EB=a["EB"]),
        in_width=simd * a["EB"], out_width=simd * a["EB"], in_beats=dim * dim * c // simd,
        cycles=dim * dim * c // simd,
        comment=f"max pool {p}x{p} over {dim}x{dim}x{c}, SIMD {simd}")


# bit-vector parameters written as sized hex literals: parameter -> the parameter giving its width
SIZED_PARAMS = {"OUT_FLIP": ("MH", "C")}   # one bit per output (mvtu_sparse) or channel (thresholding)


def _param_literal(key: str, v, params: dict) -> str:
    """A Verilog parameter value: strings quoted, bit vectors sized hex, integers as is."""
    if isinstance(v, str):
        return f"\"{v}\""
    if key in SIZED_PARAMS:
        width = next(int(params[k]) for k in SIZED_PARAMS[key] if k in params)
        return f"{width}'h{int(v):x}"
    return str(int(v))


def _sparse_stage(model: onnx.ModelProto, node, a: dict, out_dir: Path, i: int) -> tuple[dict, dict]:
    """An MVTUSparse node -> mvtu_sparse: schedule and memory images for its PE/SIMD
    built and written by hw.memfiles_sparse (files layer<i>_weights/_schedule/_rowconst/
    _thresholds.mem, named from the layer index only), RTL parameters, stage entry.
    Cycles per vector: max(SF, STEPS) (docs/hw_interfaces.md), times the pixels of a
    sliding window in front."""
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


def _mvtu_stage(model: onnx.ModelProto, node, a: dict, out_dir: Path, i: int) -> tuple[dict, dict]:
    """An MVTU node -> mvtu: weight and threshold images (layer<i>_*.mem), parameters, stage."""
    w = initializer(model, node.input[1]).astype(np.int64)
    t = initializer(model, node.input[2]).astype(np.int64) if len(node.input) > 2 else None
    _check_mvtu(node, a, w, t)
    wfile, tfile = f"layer{i}_weights.mem", f"layer{i}_thresholds.mem"
    write_memh(out_dir / wfile, weight_words(w, a["PE"], a["SIMD"]), a["PE"] * a["SIMD"])
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
        WEIGHT_RAM=int(weights_in_bram(a)),
        WEIGHT_FILE=wfile, THRESH_FILE=tfile if thr_out else "", pixels=pixels,
        in_width=a["SIMD"] * ib, out_width=a["PE"] * ob)
    offset = int(a.get("input_offset", 0))
    if offset:  # levels of a signed k-bit activation: the unit subtracts the offset
        q["INPUT_OFFSET"] = offset
    pkeys = ("MW", "MH", "PE", "SIMD", "MODE", "INPUT_BITS", "INPUT_SIGNED") \
        + (("INPUT_OFFSET",) if offset else ()) + ("ACC_BITS", "OUT_MODE") \
        + (("OUT_BITS",) if out_mode == 2 else ()) + ("WEIGHT_RAM", "WEIGHT_FILE", "THRESH_FILE")
    stage = dict(
        kind="mvtu", module="mvtu", source=q["source"], layer=q,
        params={k: q[k] for k in pkeys},
        in_width=q["in_width"], out_width=q["out_width"], in_beats=pixels * a["MW"] // a["SIMD"],
        cycles=pixels * (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"]),
        comment=f"{a['MW']}x{a['MH']}, SIMD {a['SIMD']}, PE {a['PE']}, mode {q['MODE']}"
                + (f", {ob}-bit outputs" if out_mode == 2 else "")
                + (f", {pixels} pixels" if pixels > 1 else ""))
    return q, stage


def _add_stage(node, a) -> dict:
    """StreamAdd -> stream_add: lane-wise sum of two unsigned streams, one bit wider."""
    name = comment_safe(node.name)
    c, pe, eb, pixels = a["C"], a["PE"], a["EB"], a["pixels"]
    if c % pe:
        raise BnnforgeError(f"node {name!r}: {pe} lanes do not divide its {c} channels")
    beats = pixels * c // pe
    return dict(kind="add", module="stream_add", source=comment_safe(a.get("source_node", node.name)),
                params=dict(LANES=pe, IN_BITS=eb, SIGNED=0, OUT_BITS=eb + 1),
                in_width=pe * eb, out_width=pe * (eb + 1), in_beats=beats, cycles=beats, ports_in=2,
                comment=f"residual add of two {eb}-bit streams, {c} channels x {pixels} pixels, {pe} lanes")


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
    return dict(kind="thresholding", module="thresholding", source=comment_safe(a.get("source_node", node.name)),
                params=params, in_width=pe * ib, out_width=pe * k, in_beats=beats, cycles=beats,
                comment=f"requantize {ib}-bit sums to {k} bit(s), {c} channels x {pixels} pixels, {pe} lanes")


def _fork_stage(node, a) -> dict:
    """StreamFork -> stream_fork: each beat delivered to N readers."""
    width = a["PE"] * a["EB"]
    n = a["N"]
    return dict(kind="fork", module="stream_fork", source=comment_safe(node.name),
                params=dict(WIDTH=width, N=n), in_width=width, out_width=width, in_beats=0, cycles=0,
                ports_out=n, comment=f"fork to {n} readers, {width} bits per beat")


def signed_bits(lo: int, hi: int) -> int:
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def generate(model: onnx.ModelProto, out_dir: str | Path, name: str = "bnn", fifo_depth: int = 2) -> dict:
    """Write `<top>.v`, the library modules and memory images into out_dir.

    The top wires the stages along the graph's edges: every stream tensor has one
    producer port and one reader port (forks make copies), linked by a width converter
    where the widths differ and a FIFO sized for the reader (see _fifo_depth and
    _balance_depths). Returns the manifest (also written as manifest.json): top name,
    file list, stream widths, the MVTU layers' parameters (`layers`) and every stage.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = sanitize_identifier(name) + "_top"
    layers = _layers(model)
    params, stages = [], []
    label = layers[-1][0].op_type == "LabelSelect"
    for node, a in layers:
        op = node.op_type
        if op == "LabelSelect":
            continue
        if op == "SlidingWindow":
            st = _window_stage(node, a)
        elif op == "StreamingMaxPool":
            st = _pool_stage(node, a)
        elif op == "StreamAdd":
            st = _add_stage(node, a)
        elif op == "Thresholding":
            st = _thresholding_stage(model, node, a, out_dir, len(stages))
        elif op == "StreamFork":
            st = _fork_stage(node, a)
        else:
            q, st = (_sparse_stage if op == "MVTUSparse" else _mvtu_stage)(model, node, a, out_dir, len(params))
            params.append(q)
        st["inputs"] = list(node.input[:st.get("ports_in", 1)])
        st["outputs"] = list(node.output)
        stages.append(st)
    for k, st in enumerate(stages):
        st["index"] = k
    graph_in = model.graph.input[0].name
    final = layers[-1][0].input[0] if label else model.graph.output[0].name
    producer = {t: (st["index"], q) for st in stages for q, t in enumerate(st["outputs"])}
    first = next((st for st in stages if graph_in in st["inputs"]), None)
    if first is None or final not in producer:
        raise BnnforgeError("hardware graph does not connect its input to its output")
    last_st = stages[producer[final][0]]
    if last_st["kind"] not in ("mvtu", "mvtu_sparse"):
        raise BnnforgeError("the last hardware stage must be an MVTU (the classifier)")
    links = []
    for st in stages:
        for p, t in enumerate(st["inputs"]):
            if t == graph_in:
                continue
            if t not in producer:
                raise BnnforgeError(f"stage {st['index']} ({st['module']}) reads a stream nothing writes")
            links.append(dict(src=producer[t], dst=(st["index"], p)))
    _balance_depths(stages, links, producer, fifo_depth)
    verilog = _top_verilog(top, stages, links, first, last_st, label)
    (out_dir / f"{top}.v").write_text(verilog)
    files = []
    for op in [n.op_type for n, _ in layers]:
        for f in STAGE_FILES[op]:
            if f not in files:
                files.append(f)
    files = BASE_FILES + files
    for f in files:
        shutil.copyfile(RTL_DIR / f, out_dir / f)
    files = files + [f"{top}.v"]
    (out_dir / "filelist.f").write_text("\n".join(files) + "\n")
    last = last_st["layer"]
    manifest = {
        "top": top, "files": files, "layers": params, "label_select": label,
        "stages": [{k: v for k, v in st.items() if k not in ("layer", "inputs", "outputs")} for st in stages],
        "in_width": _bytes(first["in_width"]) * 8, "in_bits": first["in_width"],
        "in_simd": first["params"]["SIMD"],
        "in_beats_per_frame": first["in_beats"],
        "in_element_bits": first["in_width"] // first["params"]["SIMD"],
        "out_width": 8 * _bytes(_clog2(last["MH"])) if label else _bytes(last["out_width"]) * 8,
        "out_beats_per_frame": 1 if label else last["MH"] // last["PE"],
        "num_outputs": last["MH"], "acc_bits": last["ACC_BITS"],
        "ideal_cycles_per_frame": max(st["cycles"] for st in stages),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _bytes(bits: int) -> int:
    return max(1, (bits + 7) // 8)


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _port(st: dict, direction: str, p: int) -> str:
    """Signal stem of port p of a stage: s<i>_in / s<i>_out, or s<i>_in<p> for the two
    inputs of an add; a fork's outputs are slices of vectors (see _source)."""
    i = st["index"]
    if direction == "in" and st.get("ports_in", 1) > 1:
        return f"s{i}_in{p}"
    return f"s{i}_{direction}"


def _source(st: dict, q: int) -> tuple[str, str, str]:
    """(data, valid, ready) expressions of output q of a stage."""
    stem = _port(st, "out", q)
    if st.get("ports_out", 1) > 1:
        w = st["out_width"]
        return f"{stem}_data[{q * w + w - 1}:{q * w}]", f"{stem}_valid[{q}]", f"{stem}_ready[{q}]"
    return f"{stem}_data", f"{stem}_valid", f"{stem}_ready"


def _top_verilog(top: str, stages: list[dict], links: list[dict], first: dict, last_st: dict, label: bool) -> str:
    last = last_st["layer"]
    in_w = _bytes(first["in_width"]) * 8
    idx_bits = _clog2(last["MH"])
    out_w = 8 * _bytes(idx_bits) if label else _bytes(last["out_width"]) * 8
    L = []
    L.append(f"// {top}: streaming BNN accelerator generated by bnnforge. Do not edit.")
    L.append("// Stages (cycles per frame at full throughput):")
    for st in stages:
        L.append(f"//   s{st['index']} {st['module']}: {st['comment']}, {st['cycles']} cycles/frame"
                 f" (from {st['source']})")
    L.append("// Input: one frame = %d beats of %d elements, element 0 in the lowest bits%s." %
             (first["in_beats"], first["params"]["SIMD"],
              " (channels-last pixels, row-major)" if first["kind"] == "window" else ""))
    L.append("// Output: " + ("one beat per frame holding the predicted label, TLAST=1." if label else
                              "the last layer's accumulators, TLAST on the last beat of a frame."))
    L.append("`timescale 1ns / 1ps")
    L.append("")
    L.append(f"module {top} (")
    L.append("    input  wire                ap_clk,")
    L.append("    input  wire                ap_rst_n,")
    L.append("    // AXI-Stream widths are whole bytes; bits above the frame data and TLAST are ignored.")
    L.append("    /* verilator lint_off UNUSEDSIGNAL */")
    L.append(f"    input  wire [{in_w - 1}:0]       s_axis_tdata,")
    L.append("    input  wire                s_axis_tlast,")
    L.append("    /* verilator lint_on UNUSEDSIGNAL */")
    L.append("    input  wire                s_axis_tvalid,")
    L.append("    output wire                s_axis_tready,")
    L.append(f"    output wire [{out_w - 1}:0]       m_axis_tdata,")
    L.append("    output wire                m_axis_tlast,")
    L.append("    output wire                m_axis_tvalid,")
    L.append("    input  wire                m_axis_tready")
    L.append(");")
    L.append("")
    for st in stages:
        for p in range(st.get("ports_in", 1)):
            stem = _port(st, "in", p)
            L.append(f"    wire [{st['in_width'] - 1}:0] {stem}_data;")
            L.append(f"    wire {stem}_valid, {stem}_ready;")
        n = st.get("ports_out", 1)
        stem = _port(st, "out", 0)
        if n > 1:
            L.append(f"    wire [{n * st['out_width'] - 1}:0] {stem}_data;")
            L.append(f"    wire [{n - 1}:0] {stem}_valid, {stem}_ready;")
        else:
            L.append(f"    wire [{st['out_width'] - 1}:0] {stem}_data;")
            L.append(f"    wire {stem}_valid, {stem}_ready;")
    L.append("")
    f0 = _port(first, "in", 0)
    L.append(f"    assign {f0}_data  = s_axis_tdata[{first['in_width'] - 1}:0];")
    L.append(f"    assign {f0}_valid = s_axis_tvalid;")
    L.append(f"    assign s_axis_tready = {f0}_ready;")
    L.append("")
    into = {(lk["dst"]): lk for lk in links}
    for st in stages:
        i = st["index"]
        L.append(f"    // stage {i}: {st['module']} (from ONNX node {st['source']})")
        L.append(f"    {st['module']} #(")
        items = list(st["params"].items())
        for k, (key, v) in enumerate(items):
            val = _param_literal(key, v, st["params"])
            L.append(f"        .{key}({val})" + ("," if k + 1 < len(items) else ""))
        L.append(f"    ) s{i}_{st['kind']} (")
        L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
        if st.get("ports_in", 1) > 1:
            for p in range(st["ports_in"]):
                stem = _port(st, "in", p)
                L.append(f"        .in{p}_data({stem}_data), .in{p}_valid({stem}_valid), .in{p}_ready({stem}_ready),")
        else:
            L.append(f"        .in_data(s{i}_in_data), .in_valid(s{i}_in_valid), .in_ready(s{i}_in_ready),")
        L.append(f"        .out_data(s{i}_out_data), .out_valid(s{i}_out_valid), .out_ready(s{i}_out_ready)")
        L.append("    );")
        L.append("")
        for p in range(st.get("ports_in", 1)):
            lk = into.get((i, p))
            if lk is not None:
                L += _link(stages[lk["src"][0]], lk["src"][1], st, p, lk["depth"])
    i = last_st["index"]
    if label:
        L.append("    wire [%d:0] label_data;" % (idx_bits - 1))
        L.append("    label_select #(")
        L.append(f"        .PE({last['PE']}), .NF({last['MH'] // last['PE']}), "
                 f".ACC_BITS({last['ACC_BITS']}), .INDEX_BITS({idx_bits})")
        L.append("    ) label (")
        L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
        L.append(f"        .in_data(s{i}_out_data), .in_valid(s{i}_out_valid), .in_ready(s{i}_out_ready),")
        L.append("        .out_data(label_data), .out_valid(m_axis_tvalid), .out_ready(m_axis_tready)")
        L.append("    );")
        pad = out_w - idx_bits
        L.append(f"    assign m_axis_tdata = {{{pad}'d0, label_data}};" if pad else
                 "    assign m_axis_tdata = label_data;")
        L.append("    assign m_axis_tlast = 1'b1;  // one beat per frame")
    else:
        nf = last["MH"] // last["PE"]
        pad = out_w - last["out_width"]
        L.append(f"    assign m_axis_tdata = {{{pad}'d0, s{i}_out_data}};" if pad else
                 f"    assign m_axis_tdata = s{i}_out_data;")
        L.append(f"    assign m_axis_tvalid = s{i}_out_valid;")
        L.append(f"    assign s{i}_out_ready = m_axis_tready;")
        if nf == 1:
            L.append("    assign m_axis_tlast = 1'b1;")
        else:
            cb = _clog2(nf)
            L.append("    // TLAST on the last beat of each frame: a PYNQ DMA needs it to finish.")
            L.append(f"    reg [{cb - 1}:0] out_beat;")
            L.append("    always @(posedge ap_clk) begin")
            L.append("        if (!ap_rst_n) out_beat <= 0;")
            L.append(f"        else if (m_axis_tvalid && m_axis_tready) out_beat <= m_axis_tlast ? {cb}'d0 : out_beat + {cb}'d1;")
            L.append("    end")
            L.append(f"    assign m_axis_tlast = (out_beat == {cb}'d{nf - 1});")
    L.append("")
    L.append("endmodule")
    return "\n".join(L) + "\n"


def _fifo_depth(consumer: dict, fifo_depth: int) -> int:
    """An MVTU consumer gets a whole input vector (+2 for pipeline slack): it takes its
    SF beats only during its first neuron fold, so the producer can run a vector ahead
    while it replays. Windows and pools buffer internally and take a beat per clock."""
    if consumer["kind"] in ("mvtu", "mvtu_sparse"):
        q = consumer["layer"]
        return max(fifo_depth, q["MW"] // q["SIMD"] + 2)
    return max(fifo_depth, 2)


# Largest skip FIFO the compiler emits, in bits (a residual branch that lags its
# shortcut by more than this is refused rather than silently filling the device).
SKIP_FIFO_BUDGET_BITS = 1 << 21
PIPELINE_SLACK_CYCLES = 16   # register stages of a unit, FIFOs and converters on a path


def _stage_lag(st: dict, ideal: int) -> float:
    """How far (a fraction of a frame period) a stage's first output trails its first
    input when the network runs at its ideal rate: a window waits for K - PAD + 1 rows
    of its map, a pool for P rows, an MVTU for one input vector, every stage for its
    pipeline."""
    p = st["params"]
    lag = PIPELINE_SLACK_CYCLES / ideal
    if st["kind"] == "window":
        lag += (p["K"] - p["PAD"] + 1) / p["IFM_DIM"]
    elif st["kind"] == "pool":
        lag += p["P"] / p["IFM_DIM"]
    elif st["kind"] in ("mvtu", "mvtu_sparse"):
        lag += 2 / max(1, st["layer"]["pixels"])
    return lag


def _balance_depths(stages: list[dict], links: list[dict], producer: dict, fifo_depth: int) -> None:
    """FIFO depth of every link. A residual add joins a branch that lags (its windows
    wait for rows of their maps) and a shortcut that does not: while the network runs at
    its ideal rate, the shortcut's FIFO must hold every beat it delivers during that lag,
    or the fork in front stalls the branch. Lags add up along the graph (stages in
    topological order); each add input's FIFO gets the beats of the lag difference."""
    ideal = max(1, max(st["cycles"] for st in stages))
    lag = {}
    for st in stages:
        ins = [lag.get(producer[t][0], 0.0) if t in producer else 0.0 for t in st["inputs"]]
        lag[st["index"]] = max(ins or [0.0]) + _stage_lag(st, ideal)
    for lk in links:
        dst = stages[lk["dst"][0]]
        depth = _fifo_depth(dst, fifo_depth)
        if dst["kind"] == "add":
            others = [lag[producer[t][0]] for t in dst["inputs"]]
            behind = max(others) - lag[lk["src"][0]]
            beats = dst["in_beats"]
            need = int(np.ceil(behind * beats)) + PIPELINE_SLACK_CYCLES
            depth = max(depth, min(need, beats + PIPELINE_SLACK_CYCLES))
            if depth * dst["in_width"] > SKIP_FIFO_BUDGET_BITS:
                raise BnnforgeError(
                    f"stage {dst['index']} (residual add from {dst['source']}): its shortcut must buffer "
                    f"{depth:,} beats of {dst['in_width']} bits to keep pace with the branch, over the "
                    f"{SKIP_FIFO_BUDGET_BITS:,}-bit skip FIFO budget; fold the branch's layers less deeply "
                    "or use smaller feature maps")
        lk["depth"] = int(depth)


def _link(src: dict, q: int, dst: dict, p: int, depth: int) -> list[str]:
    """Output q of stage src -> (width converter) -> FIFO -> input p of stage dst.

    The FIFO sits at the consumer's width and holds `depth` consumer beats (see
    _balance_depths). Names follow the producer: fifo<i> (fifo<i>_<q> after a fork)."""
    w_out, w_in = src["out_width"], dst["in_width"]
    tag = f"{src['index']}" if src.get("ports_out", 1) == 1 else f"{src['index']}_{q}"
    data, valid, ready = _source(src, q)
    sink = _port(dst, "in", p)
    L = []
    if w_out != w_in:
        L.append(f"    wire [{w_in - 1}:0] c{tag}_data;")
        L.append(f"    wire c{tag}_valid, c{tag}_ready;")
        L.append(f"    stream_dwc #(.IN_WIDTH({w_out}), .OUT_WIDTH({w_in})) dwc{tag} (")
        L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
        L.append(f"        .in_data({data}), .in_valid({valid}), .in_ready({ready}),")
        L.append(f"        .out_data(c{tag}_data), .out_valid(c{tag}_valid), .out_ready(c{tag}_ready)")
        L.append("    );")
        data, valid, ready = f"c{tag}_data", f"c{tag}_valid", f"c{tag}_ready"
    L.append(f"    stream_fifo #(.WIDTH({w_in}), .DEPTH({depth})) fifo{tag} (")
    L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
    L.append(f"        .in_data({data}), .in_valid({valid}), .in_ready({ready}),")
    L.append(f"        .out_data({sink}_data), .out_valid({sink}_valid), .out_ready({sink}_ready)")
    L.append("    );")
    L.append("")
    return L
