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


STAGE_OPS = ("MVTU", "MVTUSparse", "SlidingWindow", "StreamingMaxPool")
# library files each stage kind needs beyond the always-present stream plumbing
STAGE_FILES = {"MVTU": ["popcount.v", "adder_tree.v", "mvtu.v"],
               "MVTUSparse": ["popcount.v", "adder_tree.v", "sign_resize.v", "mvtu_sparse.v"],
               "SlidingWindow": ["sliding_window.v"],
               "StreamingMaxPool": ["maxpool_bin.v"],
               "LabelSelect": ["label_select.v"]}
BASE_FILES = ["stream_fifo.v", "stream_dwc.v", "stream_skid.v"]


def mvtu_pipe_every(simd: int) -> int:
    """Adder levels per clock in an MVTU's chunk-sum tree (its PIPE_EVERY). Yosys `sta`
    with xc7 cells, worst register-to-register path: two levels per clock are 1.9 ns at
    SIMD 8 but 2.55 ns at SIMD 49 (the last segment adds the widest levels and the chunk
    offset), one level per clock 2.05 ns at SIMD 64; the stage budget is 2.5 ns."""
    return 2 if simd <= 32 else 1


def _layers(model: onnx.ModelProto):
    out = []
    for node in model.graph.node:
        if node.op_type not in STAGE_OPS + ("LabelSelect",):
            raise BnnforgeError(f"node {comment_safe(node.name)!r}: op {node.op_type} has no Verilog module")
        out.append((node, get_attrs(node)))
    if not out or out[0][0].op_type not in STAGE_OPS:
        raise BnnforgeError("hardware graph must start with an MVTU or a sliding window")
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
SIZED_PARAMS = {"OUT_FLIP": "MH"}


def _param_literal(key: str, v, params: dict) -> str:
    """A Verilog parameter value: strings quoted, bit vectors sized hex, integers as is."""
    if isinstance(v, str):
        return f"\"{v}\""
    if key in SIZED_PARAMS:
        return f"{int(params[SIZED_PARAMS[key]])}'h{int(v):x}"
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


def generate(model: onnx.ModelProto, out_dir: str | Path, name: str = "bnn", fifo_depth: int = 2) -> dict:
    """Write `<top>.v`, the library modules and memory images into out_dir.

    Returns the manifest (also written as manifest.json): top name, file list,
    stream widths, the MVTU layers' parameters (`layers`) and every stage (`stages`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = sanitize_identifier(name) + "_top"
    layers = _layers(model)
    params, stages = [], []
    for node, a in layers:
        if node.op_type == "SlidingWindow":
            stages.append(_window_stage(node, a))
            continue
        if node.op_type == "StreamingMaxPool":
            stages.append(_pool_stage(node, a))
            continue
        if node.op_type == "MVTUSparse":
            q, st = _sparse_stage(model, node, a, out_dir, len(params))
            params.append(q)
            stages.append(st)
            continue
        if node.op_type != "MVTU":
            continue
        w = initializer(model, node.input[1]).astype(np.int64)
        t = initializer(model, node.input[2]).astype(np.int64) if len(node.input) > 2 else None
        _check_mvtu(node, a, w, t)
        i = len(params)
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
            WEIGHT_RAM=int(weights_in_bram(a)), PIPE_EVERY=mvtu_pipe_every(a["SIMD"]),
            WEIGHT_FILE=wfile, THRESH_FILE=tfile if thr_out else "", pixels=pixels,
            in_width=a["SIMD"] * ib, out_width=a["PE"] * ob)
        offset = int(a.get("input_offset", 0))
        if offset:  # levels of a signed k-bit activation: the unit subtracts the offset
            q["INPUT_OFFSET"] = offset
        params.append(q)
        pkeys = ("MW", "MH", "PE", "SIMD", "MODE", "INPUT_BITS", "INPUT_SIGNED") \
            + (("INPUT_OFFSET",) if offset else ()) + ("ACC_BITS", "OUT_MODE") \
            + (("OUT_BITS",) if out_mode == 2 else ()) + ("WEIGHT_RAM", "PIPE_EVERY", "WEIGHT_FILE", "THRESH_FILE")
        stages.append(dict(
            kind="mvtu", module="mvtu", source=q["source"], layer=q,
            params={k: q[k] for k in pkeys},
            in_width=q["in_width"], out_width=q["out_width"], in_beats=pixels * a["MW"] // a["SIMD"],
            cycles=pixels * (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"]),
            comment=f"{a['MW']}x{a['MH']}, SIMD {a['SIMD']}, PE {a['PE']}, mode {q['MODE']}"
                    + (f", {ob}-bit outputs" if out_mode == 2 else "")
                    + (f", {pixels} pixels" if pixels > 1 else "")))
    for k, st in enumerate(stages):
        st["index"] = k
    label = layers[-1][0].op_type == "LabelSelect"
    if stages[-1]["kind"] not in ("mvtu", "mvtu_sparse"):
        raise BnnforgeError("the last hardware stage must be an MVTU (the classifier)")
    verilog = _top_verilog(top, stages, label, fifo_depth)
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
    last = params[-1]
    first = stages[0]
    manifest = {
        "top": top, "files": files, "layers": params, "label_select": label,
        "stages": [{k: v for k, v in st.items() if k != "layer"} for st in stages],
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


def _top_verilog(top: str, stages: list[dict], label: bool, fifo_depth: int) -> str:
    first, last_st = stages[0], stages[-1]
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
        i = st["index"]
        L.append(f"    wire [{st['in_width'] - 1}:0] s{i}_in_data;")
        L.append(f"    wire s{i}_in_valid, s{i}_in_ready;")
        L.append(f"    wire [{st['out_width'] - 1}:0] s{i}_out_data;")
        L.append(f"    wire s{i}_out_valid, s{i}_out_ready;")
    L.append("")
    L.append(f"    assign s0_in_data  = s_axis_tdata[{first['in_width'] - 1}:0];")
    L.append("    assign s0_in_valid = s_axis_tvalid;")
    L.append("    assign s_axis_tready = s0_in_ready;")
    L.append("")
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
        L.append(f"        .in_data(s{i}_in_data), .in_valid(s{i}_in_valid), .in_ready(s{i}_in_ready),")
        L.append(f"        .out_data(s{i}_out_data), .out_valid(s{i}_out_valid), .out_ready(s{i}_out_ready)")
        L.append("    );")
        L.append("")
        if i + 1 < len(stages):
            n = stages[i + 1]
            L += _link(i, st["out_width"], n["in_width"], _fifo_depth(n, fifo_depth))
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
        # a register slice keeps m_axis_tready off the last unit's pipeline enable
        L.append(f"    wire [{last['out_width'] - 1}:0] out_slice_data;")
        L.append(f"    stream_skid #(.WIDTH({last['out_width']})) out_slice (")
        L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
        L.append(f"        .in_data(s{i}_out_data), .in_valid(s{i}_out_valid), .in_ready(s{i}_out_ready),")
        L.append("        .out_data(out_slice_data), .out_valid(m_axis_tvalid), .out_ready(m_axis_tready)")
        L.append("    );")
        L.append(f"    assign m_axis_tdata = {{{pad}'d0, out_slice_data}};" if pad else
                 "    assign m_axis_tdata = out_slice_data;")
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


def _link(i: int, w_out: int, w_in: int, depth: int) -> list[str]:
    """Producer layer i -> (width converter) -> FIFO -> consumer layer i+1.

    The FIFO sits at the consumer's width and holds `depth` consumer beats; the
    caller sizes it to a whole input frame of the consumer, so the producer can
    run a frame ahead while the consumer replays its input buffer (nf > 0)."""
    j = i + 1
    L = []
    src = f"s{i}_out"
    if w_out != w_in:
        L.append(f"    wire [{w_in - 1}:0] c{i}_data;")
        L.append(f"    wire c{i}_valid, c{i}_ready;")
        L.append(f"    stream_dwc #(.IN_WIDTH({w_out}), .OUT_WIDTH({w_in})) dwc{i} (")
        L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
        L.append(f"        .in_data({src}_data), .in_valid({src}_valid), .in_ready({src}_ready),")
        L.append(f"        .out_data(c{i}_data), .out_valid(c{i}_valid), .out_ready(c{i}_ready)")
        L.append("    );")
        src = f"c{i}"
    L.append(f"    stream_fifo #(.WIDTH({w_in}), .DEPTH({depth})) fifo{i} (")
    L.append("        .clk(ap_clk), .rst_n(ap_rst_n),")
    L.append(f"        .in_data({src}_data), .in_valid({src}_valid), .in_ready({src}_ready),")
    L.append(f"        .out_data(s{j}_in_data), .out_valid(s{j}_in_valid), .out_ready(s{j}_in_ready)")
    L.append("    );")
    L.append("")
    return L
