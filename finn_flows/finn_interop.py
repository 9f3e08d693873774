"""Hand an exported QONNX model to FINN's own `build_dataflow` (FINN installed from its
Git repository, typically inside FINN's Docker image; not a dependency of this project).

What FINN needs from us:
1. An adapted model. FINN's QONNX-to-FINN conversion accepts an *unsigned* `Quant`
   only behind a `Relu` (QuantReluHandler); behind anything else it requires a signed
   quantizer (QuantIdentityHandler raises "FINN only supports signed Quant nodes for
   identity activations"). Our {0,1} activations (threshold `Sub`/`Add`, then
   `Quant(bit_width=1, signed=0)`) and unsigned input quantizers are exactly that case.
   `adapt_model` inserts a `Relu` in front of every unsigned Quant not already fed by
   one. This is exact: an unsigned Quant clips negative values to 0 whatever their
   rounding, and Relu leaves non-negative values alone. The same rewrite is available as
   a FINN build step (`step_bnnforge_unsigned_quant_relu`) for FINN step lists.
2. A folding JSON with FINN's node names. Our layers are `MVTU_<i>`; after FINN's
   `step_specialize_layers` + `GiveUniqueNodeNames` the matrix-vector units are
   `MVAU_hls_<i>` in the same order (one MVAU per fully-connected layer). `finn_folding`
   translates keys and keeps FINN's format ("Defaults", per-node "PE"/"SIMD").
3. A build configuration: FINN's `DataflowBuildConfig` keys, steps from
   `step_qonnx_to_finn` to `step_generate_estimate_reports` (pure Python, no Vivado),
   plus the hardware steps when Vivado is on PATH.
Then `compare_cycles` sets FINN's per-layer cycle estimates next to ours.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bnnforge.errors import BnnforgeError

FINN_ESTIMATE_STEPS = [
    "step_qonnx_to_finn", "step_tidy_up", "step_streamline", "step_convert_to_hw",
    "step_create_dataflow_partition", "step_specialize_layers", "step_apply_folding_config",
    "step_minimize_bit_width", "step_generate_estimate_reports",
]
FINN_HW_STEPS = ["step_hw_codegen", "step_hw_ipgen", "step_set_fifo_depths", "step_create_stitched_ip",
                 "step_synthesize_bitfile", "step_make_pynq_driver", "step_deployment_package"]
FINN_BOARDS = {"pynq-z1": "Pynq-Z1", "pynq-z2": "Pynq-Z2"}
_OUR_NODE = re.compile(r"^MVTU_(\d+)$")


def finn_available() -> tuple[bool, str]:
    try:
        import finn.builder.build_dataflow  # noqa: F401
        import finn.builder.build_dataflow_config  # noqa: F401
    except Exception as e:  # ImportError, or FINN's own import-time checks (e.g. missing env vars)
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return True, ""


# ------------------------------------------------------------------------- model
def _unsigned_quants(model: onnx.ModelProto):
    for node in model.graph.node:
        if node.op_type != "Quant":
            continue
        signed = next((a.i for a in node.attribute if a.name == "signed"), 1)
        if not signed:
            yield node


def adapt_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Insert Relu before every unsigned Quant not fed by a Relu. Returns (model, count)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    producers = {o: n for n in m.graph.node for o in n.output}
    names = {n.name for n in m.graph.node} | {t for n in m.graph.node for t in list(n.input) + list(n.output)}
    count = 0
    for q in list(_unsigned_quants(m)):
        src = q.input[0]
        p = producers.get(src)
        if p is not None and p.op_type == "Relu":
            continue
        k = 0
        while f"bnnforge_relu_{k}" in names or f"{src}_relu{k}" in names:
            k += 1
        node_name, out = f"bnnforge_relu_{k}", f"{src}_relu{k}"
        names |= {node_name, out}
        relu = helper.make_node("Relu", [src], [out], name=node_name)
        idx = list(m.graph.node).index(q)
        m.graph.node.insert(idx, relu)
        q.input[0] = out
        count += 1
    return m, count


def step_bnnforge_unsigned_quant_relu(model, cfg):
    """FINN build step (ModelWrapper in, ModelWrapper out): `adapt_model` in place."""
    from qonnx.core.modelwrapper import ModelWrapper

    adapted, _ = adapt_model(model.model)
    return ModelWrapper(adapted)


# ----------------------------------------------------------------------- folding
def finn_folding(folding: dict, source: str = "folding") -> dict:
    """Our folding JSON (MVTU_<i>) -> FINN's node names (MVAU_hls_<i>), same format."""
    if not isinstance(folding, dict):
        raise BnnforgeError(f"{source}: folding configuration must be a JSON object")
    out = {"Defaults": dict(folding.get("Defaults", {}))}
    for key, entry in folding.items():
        if key == "Defaults":
            continue
        m = _OUR_NODE.match(str(key))
        if not m:
            raise BnnforgeError(f"{source}: entry {key!r} has no FINN counterpart (expected MVTU_<i>)")
        if not isinstance(entry, dict) or set(entry) - {"PE", "SIMD"}:
            raise BnnforgeError(f"{source}: {key} must be an object with only PE/SIMD")
        out[f"MVAU_hls_{int(m.group(1))}"] = {k: entry[k] for k in ("PE", "SIMD") if k in entry}
    return out


def our_node_name(finn_name: str) -> str | None:
    m = re.match(r"^MVAU_(?:hls|rtl)_(\d+)$", finn_name)
    return f"MVTU_{m.group(1)}" if m else None


# ------------------------------------------------------------------------ config
def dataflow_config(out_dir: Path, folding_file: Path, fclk_mhz: float, board: str = "pynq-z2",
                    hw: bool = False) -> dict:
    """Keys of FINN's DataflowBuildConfig (src/finn/builder/build_dataflow_config.py)."""
    if board not in FINN_BOARDS:
        raise BnnforgeError(f"--board: unknown board {board!r}; known boards: {', '.join(sorted(FINN_BOARDS))}")
    outputs = ["estimate_reports"] + (["stitched_ip", "bitfile", "pynq_driver", "deployment_package"] if hw else [])
    return {
        "output_dir": str(out_dir),
        "synth_clk_period_ns": round(1000.0 / fclk_mhz, 6),
        "board": FINN_BOARDS[board],
        "shell_flow_type": "vivado_zynq",
        "fpga_part": "xc7z020clg400-1",
        "folding_config_file": str(folding_file),
        "generate_outputs": outputs,
        "steps": ["step_bnnforge_unsigned_quant_relu"] + FINN_ESTIMATE_STEPS + (FINN_HW_STEPS if hw else []),
        "save_intermediate_models": True,
    }


def prepare(model_path, folding: dict, out_dir, fclk_mhz: float = 100.0, board: str = "pynq-z2",
            hw: bool = False, folding_source: str = "folding") -> dict:
    """Write <out_dir>/{model_finn.onnx, folding_finn.json, dataflow_build_config.json}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(model_path))
    adapted, n = adapt_model(model)
    onnx.save(adapted, str(out_dir / "model_finn.onnx"))
    (out_dir / "folding_finn.json").write_text(json.dumps(finn_folding(folding, folding_source), indent=2) + "\n")
    cfg = dataflow_config(out_dir / "finn_output", out_dir / "folding_finn.json", fclk_mhz, board, hw)
    (out_dir / "dataflow_build_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return {"model": str(out_dir / "model_finn.onnx"), "relus_inserted": n, "config": cfg}


def run_finn(prep: dict) -> int:
    """FINN's build_dataflow_cfg with the prepared config (needs `import finn`)."""
    ok, why = finn_available()
    if not ok:
        raise BnnforgeError(f"FINN is not importable ({why}); use FINN's Docker image (docker/README.md)")
    from finn.builder import build_dataflow, build_dataflow_config as bdc

    cfg = dict(prep["config"])
    steps = [step_bnnforge_unsigned_quant_relu if s == "step_bnnforge_unsigned_quant_relu" else s
             for s in cfg.pop("steps")]
    cfg["generate_outputs"] = [bdc.DataflowOutputType(o) for o in cfg["generate_outputs"]]
    cfg["shell_flow_type"] = bdc.ShellFlowType(cfg["shell_flow_type"])
    return build_dataflow.build_dataflow_cfg(prep["model"], bdc.DataflowBuildConfig(steps=steps, **cfg))


def compare_cycles(finn_output_dir, our_estimates: dict) -> list[dict]:
    """FINN's report/estimate_layer_cycles.json vs our estimates.json, per MVAU/MVTU."""
    path = Path(finn_output_dir) / "report" / "estimate_layer_cycles.json"
    if not path.is_file():
        raise BnnforgeError(f"{path}: not found (did FINN run step_generate_estimate_reports?)")
    finn = json.loads(path.read_text())
    ours = {l["name"]: l["cycles"] for l in our_estimates["layers"]}
    rows = []
    for name, cycles in finn.items():
        o = our_node_name(name)
        if o is not None:
            rows.append({"finn_node": name, "node": o, "finn_cycles": int(cycles), "our_cycles": ours.get(o)})
    if len(rows) != len(ours):
        raise BnnforgeError(f"{path}: FINN has {len(rows)} MVAU layers, our build {len(ours)}")
    return rows
