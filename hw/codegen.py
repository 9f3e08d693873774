"""Verilog code generation: hardware-layer ONNX -> a readable top level, the library
modules it uses, and $readmemh memory images.

Each node becomes a stage through the module of its operator kind (hw/stages/); this
file only wires the stages along the graph's edges (width converters, FIFOs sized for
the reader and for residual branches), adds the label select and writes the manifest.
Nothing from the ONNX file reaches an identifier or a file name: instances and files
are named from indices, the top from a sanitized user-given name, and ONNX node names
appear only in comments after sanitizing (hw/verilog_names.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.resources import rtl_dir
from bnnforge.hw.hwgraph import get_attrs
from bnnforge.hw.stages import PIPELINE_SLACK_CYCLES, BuildContext, stage_kind
from bnnforge.hw.verilog_names import comment_safe, sanitize_identifier  # noqa: F401  (re-exported)

RTL_DIR = rtl_dir()



BASE_FILES = ["stream_fifo.v", "stream_dwc.v", "stream_skid.v"]


def _layers(model: onnx.ModelProto):
    out = []
    for node in model.graph.node:
        if node.op_type != "LabelSelect":
            stage_kind(node.op_type, node.name)   # an op without a Verilog module is refused here
        out.append((node, get_attrs(node)))
    if not out:
        raise BnnforgeError("hardware graph is empty")
    if not any(stage_kind(n.op_type).layer for n, _ in out if n.op_type != "LabelSelect"):
        raise BnnforgeError("hardware graph has no MVTU layer")
    for k, (node, _) in enumerate(out[:-1]):
        if node.op_type == "LabelSelect":
            raise BnnforgeError(f"node {comment_safe(node.name)!r}: LabelSelect must be the last node")
    return out


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


def generate(model: onnx.ModelProto, out_dir: str | Path, name: str = "bnn", fifo_depth: int = 2,
             clk_period_ns: float | None = None) -> dict:
    """Write `<top>.v`, the library modules and memory images into out_dir.

    The top wires the stages along the graph's edges: every stream tensor has one
    producer port and one reader port (forks make copies), linked by a width converter
    where the widths differ and a FIFO sized for the reader (see _fifo_depth and
    _balance_depths). Returns the manifest (also written as manifest.json): top name,
    file list, stream widths, the MVTU layers' parameters (`layers`) and every stage.
    clk_period_ns (FINN's synth_clk_period_ns) sets how deeply each MVTU's adder tree is
    pipelined and refuses a layer that cannot meet it (hw/stages/mvtu.py mvtu_pipe_every).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = sanitize_identifier(name) + "_top"
    layers = _layers(model)
    params, stages = [], []
    label = layers[-1][0].op_type == "LabelSelect"
    for node, a in layers:
        if node.op_type == "LabelSelect":
            continue
        kind = stage_kind(node.op_type, node.name)
        st = kind.build(BuildContext(model, out_dir, stage_index=len(stages), layer_index=len(params),
                                     clk_period_ns=clk_period_ns), node, a)
        if kind.layer:
            params.append(st["layer"])
        st["inputs"] = list(node.input[:kind.ports_in])
        st["outputs"] = list(node.output)
        st["op_type"] = node.op_type
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
    if "layer" not in last_st:
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
    for lk in links:
        src, dst = stages[lk["src"][0]], stages[lk["dst"][0]]
        lk.update(width=dst["in_width"], converter=[src["out_width"], dst["in_width"]]
                  if src["out_width"] != dst["in_width"] else None)
    verilog = _top_verilog(top, stages, links, first, last_st, label)
    (out_dir / f"{top}.v").write_text(verilog)
    files = []
    for op in [n.op_type for n, _ in layers]:
        for f in (("stream_fifo.v", "credit_queue.v", "label_select.v") if op == "LabelSelect" else stage_kind(op).files):
            if f not in files:
                files.append(f)
    files = BASE_FILES + [f for f in files if f not in BASE_FILES]
    for f in files:
        shutil.copyfile(RTL_DIR / f, out_dir / f)
    files = files + [f"{top}.v"]
    (out_dir / "filelist.f").write_text("\n".join(files) + "\n")
    last = last_st["layer"]
    manifest = {
        "top": top, "files": files, "layers": params, "label_select": label,
        "stages": [{k: v for k, v in st.items() if k not in ("layer", "inputs", "outputs", "op_type")}
                   for st in stages],
        "in_width": _bytes(first["in_width"]) * 8, "in_bits": first["in_width"],
        "in_simd": first["params"]["SIMD"],
        "in_beats_per_frame": first["in_beats"],
        "in_element_bits": first["in_width"] // first["params"]["SIMD"],
        "out_width": 8 * _bytes(_clog2(last["MH"])) if label else _bytes(last["out_width"]) * 8,
        "out_beats_per_frame": 1 if label else last["MH"] // last["PE"],
        "num_outputs": last["MH"], "acc_bits": last["ACC_BITS"],
        "ideal_cycles_per_frame": max(st["cycles"] for st in stages),
        "links": [{"from": lk["src"][0], "to": lk["dst"][0], "port": lk["dst"][1], "width": lk["width"],
                   "depth": lk["depth"], "converter": lk["converter"]} for lk in links],
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
    if "layer" in consumer:   # a matrix unit
        q = consumer["layer"]
        return max(fifo_depth, q["MW"] // q["SIMD"] + 2)
    return max(fifo_depth, 2)


# Largest skip FIFO the compiler emits, in bits (a residual branch that lags its
# shortcut by more than this is refused rather than silently filling the device).
SKIP_FIFO_BUDGET_BITS = 1 << 21


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
        lag[st["index"]] = max(ins or [0.0]) + stage_kind(st["op_type"]).lag(st, ideal)
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


def plan_links(model: onnx.ModelProto, fifo_depth: int = 2) -> list[dict]:
    """The FIFOs and width converters `generate` would emit for this hardware graph
    (generated into a scratch folder): the manifest's `links`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bnnforge_links_") as tmp:
        return generate(model, tmp, fifo_depth=fifo_depth)["links"]
