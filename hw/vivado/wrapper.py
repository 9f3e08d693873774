"""The DMA-facing wrapper `<top>_dma` around a generated `<top>` and the byte layout of
its streams (what the PYNQ driver packs and unpacks).

Why a wrapper at all:
- Xilinx AXI DMA stream ports are 8, 16, 32, ..., 1024 bits wide, while the generated
  top's widths are whole bytes but not always a power of two (LFC: 56-bit input beats).
  Each accelerator beat therefore travels as one DMA beat of the next power-of-two
  width, zero-padded in the upper bytes (the top ignores bits above its frame data).
  One DMA beat = one accelerator beat, so padding costs memory bytes, never beats.
- The S2MM channel of an AXI DMA finishes a transfer at TLAST. The top raises TLAST at
  the end of every frame, which would cut a batch receive after its first frame. The
  wrapper instead raises output TLAST on the last beat of the frame whose input frame
  arrived with input TLAST (the MM2S channel raises it on the last beat of each send).
  So one send of N frames gives one receive of N frames' results, with no register
  interface: the batch boundary travels in band. Batch lengths wait in a 4-deep queue;
  when it is full the wrapper stops accepting input until a batch has left.
  Input TLAST on a beat that does not end a frame is ignored (the driver only ever sends
  whole frames).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bnnforge.errors import BnnforgeError

DMA_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_QUEUE = 4
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def dma_width(bits: int, what: str) -> int:
    for w in DMA_WIDTHS:
        if bits <= w:
            return w
    raise BnnforgeError(f"{what}: {bits}-bit stream beats exceed the AXI DMA maximum of 1024 bits "
                        f"(lower SIMD/PE of that layer)")


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def check_manifest(manifest: dict, path: str = "manifest.json") -> None:
    """The manifest comes from a file: every field used in generated code is checked."""
    top = manifest.get("top")
    if not isinstance(top, str) or not _SAFE_NAME.match(top):
        raise BnnforgeError(f"{path}: field 'top' must be a plain identifier, got {top!r}")
    for k in ("in_width", "out_width", "in_beats_per_frame", "out_beats_per_frame", "num_outputs",
              "acc_bits", "in_element_bits"):
        v = manifest.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BnnforgeError(f"{path}: field {k!r} must be a positive integer, got {v!r}")
    if manifest["in_width"] % 8 or manifest["out_width"] % 8:
        raise BnnforgeError(f"{path}: stream widths must be whole bytes")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise BnnforgeError(f"{path}: field 'files' must be a non-empty list")
    for f in files:
        if not isinstance(f, str) or not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.v$", f):
            raise BnnforgeError(f"{path}: source file name {f!r} is not a plain Verilog file name")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise BnnforgeError(f"{path}: field 'layers' must be a non-empty list")


def stream_layout(manifest: dict, fclk_mhz: float, input_shape=None) -> dict:
    """What the driver needs to pack inputs and unpack outputs (accel.json)."""
    first, last = manifest["layers"][0], manifest["layers"][-1]
    kind = {0: "bipolar", 1: "unipolar", 2: "int"}[first["MODE"]]
    label = bool(manifest["label_select"])
    if label:
        field_bits, pe, out_bpf, signed = _clog2(last["MH"]), 1, 1, False
    elif last["OUT_MODE"] == 1:
        field_bits, pe, out_bpf, signed = last["ACC_BITS"], last["PE"], last["MH"] // last["PE"], True
    elif last["OUT_MODE"] == 2:  # k-bit multi-threshold levels, unsigned
        field_bits, pe, out_bpf, signed = last.get("OUT_BITS", 1), last["PE"], last["MH"] // last["PE"], False
    else:
        field_bits, pe, out_bpf, signed = 1, last["PE"], last["MH"] // last["PE"], False
    # the input stream: the first MVTU's vector, or (conv networks) the whole channels-last
    # image that the first sliding window reads
    per_beat = manifest.get("in_simd", first["SIMD"])
    elements = manifest.get("in_beats_per_frame", first["MW"] // first["SIMD"]) * per_beat
    din = dma_width(manifest["in_width"], "input stream")
    dout = dma_width(manifest["out_width"], "output stream")
    return {
        "format": "bnnforge-stream-layout-1",
        "top": manifest["top"],
        "wrapper": manifest["top"] + "_dma",
        "fclk_mhz": float(fclk_mhz),
        "input": {
            "elements": elements, "kind": kind, "element_bits": manifest.get("in_element_bits", first["INPUT_BITS"]),
            "signed": bool(first["INPUT_SIGNED"]), "elements_per_beat": per_beat,
            "beats_per_frame": elements // per_beat, "beat_bytes": din // 8,
            "shape": list(input_shape) if input_shape else [elements],
        },
        "output": {
            "label_select": label, "num_outputs": last["MH"], "fields_per_beat": pe,
            "field_bits": field_bits, "signed": signed, "beats_per_frame": out_bpf,
            "beat_bytes": dout // 8,
        },
        "cycles_per_frame_ideal": manifest.get("ideal_cycles_per_frame") or
        max((l["MW"] // l["SIMD"]) * (l["MH"] // l["PE"]) for l in manifest["layers"]),
        # the first output of a run waits for every stage to fill: at most each stage's frame time
        "fill_cycles": sum(int(st.get("cycles", 0)) for st in manifest.get("stages") or []) or
        sum((l["MW"] // l["SIMD"]) * (l["MH"] // l["PE"]) for l in manifest["layers"]),
        "dma": {"mm2s_tdata_bits": din, "s2mm_tdata_bits": dout, "max_transfer_bytes": (1 << 26) - 1},
    }


def wrapper_verilog(manifest: dict) -> str:
    """Verilog-2005 source of `<top>_dma` (lint-clean under verilator -Wall)."""
    top = manifest["top"]
    name = top + "_dma"
    in_w, out_w = manifest["in_width"], manifest["out_width"]
    din, dout = dma_width(in_w, "input stream"), dma_width(out_w, "output stream")
    bpf = manifest["in_beats_per_frame"]
    L = [f"// {name}: DMA-facing wrapper of {top}, generated by bnnforge (hw/vivado/wrapper.py). Do not edit.",
         f"// Input: one {din}-bit DMA beat per accelerator beat ({in_w} bits used, upper bytes ignored),",
         f"// {bpf} beats per frame. Output: {dout}-bit beats, accelerator data in the low {out_w} bits,",
         "// TLAST only on the last beat of the frame that ended a batch (input TLAST at a frame end).",
         "`timescale 1ns / 1ps", "",
         f"module {name} (",
         '    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)',
         '    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axis:m_axis, ASSOCIATED_RESET ap_rst_n" *)',
         "    input  wire                ap_clk,",
         '    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 ap_rst_n RST" *)',
         '    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)',
         "    input  wire                ap_rst_n,",
         "    /* verilator lint_off UNUSEDSIGNAL */",
         f"    input  wire [{din - 1}:0]       s_axis_tdata,",
         "    /* verilator lint_on UNUSEDSIGNAL */",
         "    input  wire                s_axis_tlast,",
         "    input  wire                s_axis_tvalid,",
         "    output wire                s_axis_tready,",
         f"    output wire [{dout - 1}:0]       m_axis_tdata,",
         f"    output wire [{dout // 8 - 1}:0]       m_axis_tkeep,",
         "    output wire                m_axis_tlast,",
         "    output wire                m_axis_tvalid,",
         "    input  wire                m_axis_tready",
         ");", "",
         "    // batch-length queue: frames - 1 of each batch whose last input frame has arrived",
         f"    reg  [31:0] q_len [0:{BATCH_QUEUE - 1}];",
         "    reg  [1:0]  q_wr, q_rd;",
         "    reg  [2:0]  q_cnt;",
         f"    wire        q_full  = (q_cnt == 3'd{BATCH_QUEUE});",
         "    wire        q_empty = (q_cnt == 3'd0);", "",
         "    wire        acc_s_ready;",
         "    wire        in_fire = s_axis_tvalid && s_axis_tready;",
         "    assign s_axis_tready = acc_s_ready && !q_full;", ""]
    if bpf > 1:
        cb = _clog2(bpf)
        L += [f"    reg  [{cb - 1}:0] in_beat;",
              f"    wire        in_frame_end = (in_beat == {cb}'d{bpf - 1});"]
    else:
        L += ["    wire        in_frame_end = 1'b1;  // one beat per frame"]
    L += ["    reg  [31:0] in_frames;  // frames of the current batch already complete",
          "    wire        push = in_fire && in_frame_end && s_axis_tlast;", "",
          "    always @(posedge ap_clk) begin",
          "        if (!ap_rst_n) begin"]
    if bpf > 1:
        L += ["            in_beat   <= 0;"]
    L += ["            in_frames <= 32'd0;",
          "        end else if (in_fire) begin"]
    if bpf > 1:
        L += [f"            in_beat <= in_frame_end ? {_clog2(bpf)}'d0 : in_beat + {_clog2(bpf)}'d1;"]
    L += ["            if (in_frame_end) in_frames <= s_axis_tlast ? 32'd0 : in_frames + 32'd1;",
          "        end",
          "    end", "",
          f"    wire [{out_w - 1}:0] acc_m_data;",
          "    wire        acc_m_last, acc_m_valid;",
          "    reg  [31:0] out_frames;  // frames of the current batch already sent",
          "    wire        out_batch_end = acc_m_last && !q_empty && (out_frames == q_len[q_rd]);",
          "    wire        out_fire = acc_m_valid && m_axis_tready;",
          "    wire        pop = out_fire && out_batch_end;", "",
          "    always @(posedge ap_clk) begin",
          "        if (!ap_rst_n) begin",
          "            out_frames <= 32'd0;",
          "        end else if (out_fire && acc_m_last) begin",
          "            out_frames <= out_batch_end ? 32'd0 : out_frames + 32'd1;",
          "        end",
          "    end", "",
          "    always @(posedge ap_clk) begin",
          "        if (!ap_rst_n) begin",
          "            q_wr  <= 2'd0;",
          "            q_rd  <= 2'd0;",
          "            q_cnt <= 3'd0;",
          "        end else begin",
          "            if (push) begin",
          "                q_len[q_wr] <= in_frames;",
          "                q_wr <= q_wr + 2'd1;",
          "            end",
          "            if (pop) q_rd <= q_rd + 2'd1;",
          "            q_cnt <= q_cnt + {2'd0, push} - {2'd0, pop};",
          "        end",
          "    end", "",
          f"    {top} accel (",
          "        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),",
          f"        .s_axis_tdata(s_axis_tdata[{in_w - 1}:0]), .s_axis_tlast(s_axis_tlast),",
          "        .s_axis_tvalid(s_axis_tvalid && !q_full), .s_axis_tready(acc_s_ready),",
          "        .m_axis_tdata(acc_m_data), .m_axis_tlast(acc_m_last),",
          "        .m_axis_tvalid(acc_m_valid), .m_axis_tready(m_axis_tready)",
          "    );", ""]
    pad = dout - out_w
    L += [f"    assign m_axis_tdata  = {{{pad}'d0, acc_m_data}};" if pad else
          "    assign m_axis_tdata  = acc_m_data;",
          f"    assign m_axis_tkeep  = {{{dout // 8}{{1'b1}}}};  // whole beats only",
          "    assign m_axis_tlast  = out_batch_end;",
          "    assign m_axis_tvalid = acc_m_valid;", "",
          "endmodule"]
    return "\n".join(L) + "\n"


def load_manifest(rtl_dir: Path) -> dict:
    path = Path(rtl_dir) / "manifest.json"
    if not path.is_file():
        raise BnnforgeError(f"{path}: not found (run `bnnforge build` with the codegen step first)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise BnnforgeError(f"{path}: not valid JSON ({e})")
    if not isinstance(manifest, dict):
        raise BnnforgeError(f"{path}: must be a JSON object")
    check_manifest(manifest, str(path))
    return manifest
