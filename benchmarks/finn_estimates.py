"""FINN's own resource estimates for the matrix-vector layers of a bnnforge build: one
FINN `MVAU_hls` node per MVTU/MVTUKbit node, with the same MW/MH/PE/SIMD and data types,
and FINN's `lut_estimation()` / `bram_estimation()` (the FINN-R cost model). FINN is
imported from a source checkout the user names (`--finn-src PATH`, the folder holding
`src/finn`); nothing of FINN ships with bnnforge.

FINN settings chosen to describe the design bnnforge generates: `mem_mode`
internal_decoupled, weights in distributed RAM (`ram_style` distributed) where our layer
uses no BRAM, else block RAM; thresholds and comparators in LUTs
(`ram_style_thresholds` distributed); LUT multipliers (`resType` lut). FINN estimates its
HLS sliding window and max pool at 0 LUT, so only the MVAUs are compared.
"""
from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import get_attrs

MATRIX_OPS = ("MVTU", "MVTUKbit")


def import_finn_mvau(finn_src):
    """FINN's MVAU_hls class from a checkout; one error line when it cannot be imported."""
    src = Path(finn_src).expanduser().resolve() / "src"
    if not (src / "finn" / "custom_op" / "fpgadataflow").is_dir():
        raise BnnforgeError(f"--finn-src {finn_src}: no src/finn/custom_op/fpgadataflow (not a FINN checkout)")
    sys.path.insert(0, str(src))
    try:
        from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
    except ImportError as e:
        raise BnnforgeError(f"--finn-src {finn_src}: FINN does not import here ({e}); its estimate methods "
                            f"need only FINN's own imports to resolve (e.g. a module named "
                            f"{getattr(e, 'name', None)!r} on PYTHONPATH)") from None
    return MVAU_hls


def _int_type(bits: int, signed: bool) -> str:
    return f"{'INT' if signed else 'UINT'}{bits}"


def finn_attrs(node: onnx.NodeProto, our_bram18: int) -> dict:
    """FINN MVAU attributes describing one of our matrix-vector nodes."""
    a = get_attrs(node)
    dec = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in a.items()}
    xnor = dec["mode"] == "xnor"
    wbits = int(dec.get("weight_bits", 1))
    if xnor:
        idt = wdt = "BINARY"
    else:
        idt = "BIPOLAR" if dec["input_kind"] == "bipolar" else _int_type(
            int(dec["input_bits"]), bool(dec.get("input_signed")) or int(dec.get("input_offset", 0)) > 0)
        wdt = "BIPOLAR" if wbits == 1 else f"INT{wbits}"
    acc = int(dec["acc_bits"])
    no_act = dec["out_mode"] == "accumulator"
    odt = (f"INT{acc}" if no_act else "BINARY" if dec["out_mode"] == "threshold"
           else _int_type(int(dec.get("out_bits", 1)), False))
    return dict(MW=int(dec["MW"]), MH=int(dec["MH"]), PE=int(dec["PE"]), SIMD=int(dec["SIMD"]),
                inputDataType=idt, weightDataType=wdt, outputDataType=odt, accDataType=f"INT{acc}",
                binaryXnorMode=int(xnor), noActivation=int(no_act), numInputVectors=[int(dec.get("pixels", 1))],
                mem_mode="internal_decoupled", ram_style="block" if our_bram18 else "distributed",
                ram_style_thresholds="distributed", resType="lut")


def finn_estimates(hw_model: onnx.ModelProto, our_layers: list[dict], mvau_cls) -> dict:
    """Per matrix-vector layer and in total: FINN's LUT and BRAM18 estimates beside ours."""
    ours = {l["name"]: l for l in our_layers}
    rows = []
    for node in hw_model.graph.node:
        if node.op_type not in MATRIX_OPS:
            continue
        o = ours[node.name]
        attrs = finn_attrs(node, int(o.get("est_bram18", 0)))
        n = helper.make_node("MVAU_hls", ["in", "w"], ["out"], domain="finn.custom_op.fpgadataflow.hls",
                             name=node.name, **attrs)
        op = mvau_cls(n)
        rows.append({"node": node.name, "finn_lut": int(op.lut_estimation()), "finn_bram18": int(op.bram_estimation()),
                     "our_lut": int(o["est_luts"]), "our_bram18": int(o.get("est_bram18", 0)),
                     "ram_style": attrs["ram_style"]})
    return {"layers": rows, "finn_lut": sum(r["finn_lut"] for r in rows),
            "finn_bram18": sum(r["finn_bram18"] for r in rows), "our_mv_lut": sum(r["our_lut"] for r in rows)}
