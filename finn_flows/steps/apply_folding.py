"""step_apply_folding: per-layer PE/SIMD from a FINN-style folding JSON.

Format (FINN's): {"Defaults": {"PE": [1, ["all"]], "SIMD": [1, ["all"]]},
                  "MVTU_0": {"PE": 16, "SIMD": 49}, ...}
Keys are node names (MVTU_<i>, MVTUSparse_<i> for block-sparse layers: same PE/SIMD
keys, and their block schedule's NNZ/STEPS are recomputed for the folding); unknown
keys and non-dividing foldings are errors.
Sliding windows and pools have no keys of their own (see derive_stream_folding).
"""
from __future__ import annotations

import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import get_attrs, producers, readers, set_attr

from ..operators import for_hw, hw_operators


def step_apply_folding(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    foldable_ops = {op: o.folding_keys for op, o in hw_operators().items() if o.folding_keys}
    folding = dict(cfg.folding or {})
    src = cfg.folding_source or "folding"
    defaults = folding.pop("Defaults", {})
    names = {n.name: n for n in model.graph.node}
    for key in folding:
        if key not in names:
            foldable = [n for n, node in names.items() if node.op_type in foldable_ops]
            raise BnnforgeError(f"{src}: folding names unknown layer {key!r}; layers: {', '.join(foldable)}")
        if names[key].op_type not in foldable_ops:
            raise BnnforgeError(f"{src}: {key} has no folding of its own: sliding windows follow the SIMD of "
                                "the MVTU they feed, pools the PE of the MVTU that feeds them")
    for node in model.graph.node:
        keys = foldable_ops.get(node.op_type)
        if not keys:
            continue
        entry = folding.get(node.name, {})
        if not isinstance(entry, dict):
            raise BnnforgeError(f"{src}: entry {node.name!r} must be an object with PE/SIMD")
        for k in entry:
            if k not in keys:
                raise BnnforgeError(f"{src}: {node.name}.{k} is not a folding key of {node.op_type} ({', '.join(keys)})")
        for k in keys:
            value = entry.get(k)
            if value is None and k in defaults:
                dv, applies = defaults[k] if isinstance(defaults[k], list) else (defaults[k], ["all"])
                if "all" in applies or node.op_type in applies:
                    value = dv
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BnnforgeError(f"{src}: {node.name}.{k} = {value!r} is not a positive integer")
            set_attr(node, k, value)
        a = get_attrs(node)
        if a["MH"] % a["PE"]:
            raise BnnforgeError(f"{src}: {node.name}.PE = {a['PE']} does not divide MH = {a['MH']}")
        if a["MW"] % a["SIMD"]:
            raise BnnforgeError(f"{src}: {node.name}.SIMD = {a['SIMD']} does not divide MW = {a['MW']}")
        for_hw(node.op_type).after_folding(model, node, src)
    derive_stream_folding(model, src)
    return model


def derive_stream_folding(model: onnx.ModelProto, src: str = "folding") -> None:
    """Stream nodes take their lanes from their neighbours, following the edges (each
    operator module's derive_folding: windows the SIMD of the MVTU they feed, pools,
    forks, adds and requantizers the lanes of the stream they read). Nodes are visited in
    dataflow order, so a producer's lanes are set before its readers'."""
    prod, read = producers(model), readers(model)
    for node in model.graph.node:
        op = for_hw(node.op_type)
        if op is not None:
            op.derive_folding(node, prod, read, src)
