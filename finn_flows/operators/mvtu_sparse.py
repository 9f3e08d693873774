"""The block-sparse unit: SparseMatMul (+ Threshold | MultiThreshold, with its optional
output flips) -> MVTUSparse (hw/rtl/mvtu_sparse.v); it shares the layer numbering with
MVTU (e.g. MVTUSparse_0, MVTU_1) and is folded the same way, its block schedule (NNZ,
STEPS) recomputed for each folding. Behind a sliding window (grouped or binary-domain
convolutions) it runs once per output pixel too.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN, attr_str, get_attrs, initializer, input_range, signed_bits_for
from bnnforge.hw.memory_style import bram18_for, sparse_weights_in_bram
from . import ConvertContext, Operator, register
from ._costs import lane_luts
from .mvtu import MODE_OF_KIND, fuse_thresholds
from .thresholding import thresholding_node, wide_requantizer as _wide_requantizer


@register
class SparseMatrixUnit(Operator):
    streamlined_ops = ("SparseMatMul",)
    hw_ops = ("MVTUSparse",)
    folding_keys = ("PE", "SIMD")

    def convert(self, ctx: ConvertContext, i: int) -> int:
        used = sparse_to_hw(ctx.model, ctx.nodes, i, ctx.layer, ctx.out_nodes, ctx.inits, ctx.pixels)
        ctx.end_matrix_layer()
        return used

    def after_folding(self, model, node, src: str) -> None:
        # the block schedule of this folding (a pm1_blocks group that straddles a
        # PE x SIMD block is refused here, naming the node)
        from bnnforge.hw.hwgraph import set_attr
        from bnnforge.hw.memfiles_sparse import sparse_layer
        sl = sparse_layer(model, node, src=src)
        set_attr(node, "NNZ", sl.nnz)
        set_attr(node, "STEPS", sl.steps)

    def estimate(self, name: str, a: dict) -> dict:
        return mvtu_sparse_estimate(name, a)


def sparse_to_hw(model, nodes, i, layer, out_nodes, inits, pixels: int = 1) -> int:
    """SparseMatMul (+ Threshold | MultiThreshold, with its optional output flips) ->
    MVTUSparse_<layer> (hw/rtl/mvtu_sparse.v). Returns the number of nodes consumed.

    Attributes as MVTU's plus weight_kind, m, q (the matrix: m + q*B, or W in {-1,0,+1}),
    NNZ and STEPS of the current folding (apply_folding recomputes them). The weight
    initializer is kept as streamlined (B, or W); ACC_BITS holds [-R-1, R+1] with
    R = max_o sum_i |W[o,i]| * max|x| (thresholds reach R + 1)."""
    from bnnforge.hw.memfiles_sparse import build_sparse_layer
    from bnnforge.hw.memfiles_sparse import integer_matrix

    from ..sparse import acc_range

    node = nodes[i]
    a = get_attrs(node)
    kind = attr_str(a["input_kind"])
    wkind = attr_str(a["weight_kind"])
    stored = initializer(model, node.input[1])
    mh, mw = stored.shape
    lo, hi = input_range(kind, a["input_bits"], bool(a["input_signed"]))
    w_int = integer_matrix(wkind, int(a["m"]), int(a["q"]), stored)
    r = acc_range(w_int, max(abs(lo), abs(hi)))
    acc_bits = signed_bits_for(-r - 1, r + 1)
    if acc_bits > 32:
        raise BnnforgeError(f"node {node.name!r}: accumulator range +-{r} needs {acc_bits} bits; "
                            "mvtu_sparse holds at most 32")
    wname = f"mvtu{layer}_weights"
    inits[wname] = numpy_helper.from_array(stored, wname)
    ins = [node.input[0], wname]
    attrs = dict(MW=mw, MH=mh, PE=1, SIMD=1, mode=MODE_OF_KIND[kind], input_kind=kind,
                 input_bits=int(a["input_bits"]), input_signed=int(a["input_signed"]), acc_bits=acc_bits,
                 pixels=pixels, weight_kind=wkind, m=int(a["m"]), q=int(a["q"]),
                 source_node=attr_str(a.get("source_node", node.name)))
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    used = 1
    wide = (nxt is not None and nxt.op_type == "MultiThreshold" and nxt.input[0] == node.output[0]
            and _wide_requantizer(nxt))
    if not wide and nxt is not None and nxt.op_type in ("Threshold", "MultiThreshold") \
            and nxt.input[0] == node.output[0]:
        fuse_thresholds(model, nxt, layer, mh, inits, ins, attrs)
        if len(nxt.input) > 2 and nxt.input[2]:
            flip = initializer(model, nxt.input[2]).astype(np.uint8).reshape(-1)
            if flip.shape != (mh,) or np.any(flip > 1):
                raise BnnforgeError(f"node {nxt.name!r}: output flips must be {mh} bits")
            fname = f"mvtu{layer}_out_flip"
            inits[fname] = numpy_helper.from_array(flip, fname)
            ins.append(fname)
        out = nxt.output[0]
        used = 2
    else:
        attrs.update(out_mode="accumulator", output_kind="int")
        out = node.output[0]
    hw = helper.make_node("MVTUSparse", ins, [out], name=f"MVTUSparse_{layer}", domain=DOMAIN, **attrs)
    sl = build_sparse_layer(w_int, 1, 1, wkind, m=int(a["m"]) if wkind == "sparse01" else None)
    hw.attribute.extend([helper.make_attribute("NNZ", sl.nnz), helper.make_attribute("STEPS", sl.steps)])
    out_nodes.append(hw)
    if wide:  # k > MVTU_MAX_OUT_BITS: accumulators into a binary-search requantizer
        out_nodes.append(thresholding_node(model, nxt, f"layer{layer}", mh, pixels, acc_bits, True, inits))
        used = 2
    return used


def mvtu_sparse_estimate(name: str, a: dict) -> dict:
    """Block-sparse unit (mvtu_sparse): only the NNZ stored PE x SIMD blocks are weight
    memory (`weight_bits`; `dense_weight_bits` is what an mvtu would store), plus the
    STEPS-entry schedule ROM, the row constants (sparse01 with bipolar input) and the
    2*SF-word input double buffer. Cycles per vector: max(SF, STEPS). LUTs from the
    same per-lane / per-accumulator-bit costs as the mvtu, plus the shared S term and the
    Q/M scaling (about 2 LUT per accumulator bit each), ROMs at 1 LUT per 32 bits, the
    buffer at 64 bits per LUT; weights in BRAM18 when deep (NNZ >= 128) and large."""
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    pixels = a.get("pixels", 1)
    sf, nf = mw // simd, mh // pe
    nnz, steps = a["NNZ"], a["STEPS"]
    kind = attr_str(a["weight_kind"])
    ib = a["input_bits"] if attr_str(a["mode"]) == "addsub" else 1
    width = pe * simd
    wbits = nnz * width
    sched_bits = steps * (max(1, (sf - 1).bit_length()) + 2)
    rowc_bits = mh * acc if kind == "sparse01" and attr_str(a["input_kind"]) == "bipolar" else 0
    buf_bits = 2 * sf * simd * ib
    out_mode = attr_str(a["out_mode"])
    nt = {"threshold": 1, "multithreshold": (1 << int(a.get("out_bits", 1))) - 1}.get(out_mode, 0)
    if sparse_weights_in_bram(nnz, width):
        bram18, rom_luts = bram18_for(width, nnz), 0
    else:
        bram18, rom_luts = 0, math.ceil(wbits / 32)
    shared = 2 * acc * (2 if kind == "sparse01" and a["m"] != 0 else 1)
    luts = int(lane_luts(attr_str(a["mode"]), pe, simd, ib) + pe * acc * 4 + shared + rom_luts + math.ceil((sched_bits + rowc_bits) / 32)
               + math.ceil(buf_bits / 64) + pe * acc * max(nt - 1, 0) + 60)
    return {
        "name": name, "kind": "mvtu_sparse", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
        "mode": f"{attr_str(a['mode'])} {kind}", "acc_bits": acc, "pixels": pixels,
        "cycles": pixels * max(sf, steps), "dense_cycles": pixels * sf * nf,
        "weight_bits": wbits, "dense_weight_bits": mw * mh, "schedule_bits": sched_bits,
        "row_const_bits": rowc_bits, "buffer_bits": buf_bits, "nonzero_blocks": nnz,
        "total_blocks": nf * sf, "steps": steps, "threshold_bits": mh * acc * nt,
        "out_bits": {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(out_mode, acc),
        "est_luts": luts, "est_bram18": bram18,
    }
