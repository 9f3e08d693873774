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
   rounding, and Relu leaves non-negative values alone. It also moves a Flatten that
   follows the input quantizer (TFC/LFC) in front of it, as FINN's own TFC has it (else
   FINN leaves a software Flatten between two HW layers and cannot partition). The same
   rewrite is available as a FINN build step (`step_bnnforge_unsigned_quant_relu`).
2. A folding JSON with FINN's node names. Our layers are `MVTU_<i>`; after FINN's
   `step_specialize_layers` + `GiveUniqueNodeNames` the matrix-vector units are
   `MVAU_hls_<i>` in the same order (one MVAU per fully-connected layer). `finn_folding`
   translates keys and keeps FINN's format ("Defaults", per-node "PE"/"SIMD").
3. A build configuration: FINN's `DataflowBuildConfig` keys, steps from
   `step_qonnx_to_finn` to `step_generate_estimate_reports` (pure Python, no Vivado),
   plus the hardware steps when Vivado is on PATH, with two steps of ours around FINN's
   (`step_bnnforge_bipolar_qonnx_to_finn`, `step_bnnforge_clip_xnor_thresholds`; see
   their docstrings). Because of these the config is for `run_finn` (FINN's Python API):
   FINN's `build_dataflow` command line cannot resolve step names that are not FINN's.
Then `compare_cycles` sets FINN's per-layer cycle estimates next to ours.
Checked against FINN dev 73ba5ed (2026-04-17) with qonnx 1.0.0: TFC and LFC, {0,1} and
{-1,+1} activations, FINN's MVAU cycles equal ours layer by layer.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

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
    """Insert Relu before every unsigned Quant not fed by a Relu, and move a Flatten that
    follows the input quantizer in front of it (`_hoist_input_flatten`). Both exact.
    Returns (model, number of Relu inserted)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _hoist_input_flatten(m)
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


# elementwise ops that commute with Flatten/Reshape when every operand but the data is a scalar
_SCALAR_ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Relu", "Quant", "BipolarQuant")


def _hoist_input_flatten(m: onnx.ModelProto) -> int:
    """Move a Flatten/Reshape that follows the host-side input quantizer in front of it.

    TFC/LFC flatten the image *after* the input quantizer (graph input -> Mul/Add/Sub ->
    Quant -> Flatten -> MatMul). FINN turns that quantizer into a Thresholding HW layer
    and leaves Flatten in software between two HW layers, so step_create_dataflow_partition
    fails ("cycle-free graph violated: partition depends on itself"). FINN's own TFC
    flattens first. With scalar operands every node of the prefix is elementwise, so
    flattening first gives the same values. Returns 1 when moved, else 0."""
    inits = {t.name: t for t in m.graph.initializer}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    tensor, chain = m.graph.input[0].name, []
    while True:
        users = consumers.get(tensor, [])
        if len(users) != 1 or tensor in {o.name for o in m.graph.output}:
            return 0
        node = users[0]
        if node.op_type in ("Flatten", "Reshape"):
            break
        if node.op_type not in _SCALAR_ELEMENTWISE or node.input[0] != tensor:
            return 0
        for extra in node.input[1:]:
            if extra and (extra not in inits or int(np.prod(inits[extra].dims)) != 1):
                return 0
        chain.append(node)
        tensor = node.output[0]
    if not chain:
        return 0
    flat, gin = node, m.graph.input[0].name
    names = {t for n in m.graph.node for t in list(n.input) + list(n.output)}
    k = 0
    while f"{gin}_flat{k}" in names:
        k += 1
    new_in = f"{gin}_flat{k}"
    old_out = flat.output[0]
    flat.input[0], flat.output[0] = gin, new_in
    chain[0].input[0] = new_in
    for n in chain:  # (1,1,1,1) constants would broadcast the flat tensor back to 4-D: use 0-d copies
        for j, extra in enumerate(n.input[1:], start=1):
            if extra and len(inits[extra].dims) > 0:
                k = 0
                while f"{extra}_scalar{k}" in names:
                    k += 1
                t = numpy_helper.from_array(numpy_helper.to_array(inits[extra]).reshape(()), f"{extra}_scalar{k}")
                names.add(t.name)
                m.graph.initializer.append(t)
                n.input[j] = t.name
    for n in m.graph.node:  # the Flatten's consumers now read the end of the prefix
        if n is not flat:
            for j, i in enumerate(n.input):
                if i == old_out:
                    n.input[j] = tensor
    for o in m.graph.output:
        if o.name == old_out:
            o.name = tensor
    nodes = [n for n in m.graph.node if n is not flat]
    stale = {n.output[0] for n in chain} | {old_out}
    keep = [v for v in m.graph.value_info if v.name not in stale]
    del m.graph.node[:]
    m.graph.node.extend([flat] + nodes)
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep)
    return 1


def step_bnnforge_unsigned_quant_relu(model, cfg):
    """FINN build step (ModelWrapper in, ModelWrapper out): `adapt_model` in place."""
    from qonnx.core.modelwrapper import ModelWrapper

    adapted, _ = adapt_model(model.model)
    return ModelWrapper(adapted)


def step_bnnforge_bipolar_qonnx_to_finn(model, cfg):
    """FINN build step, right after FINN's `step_qonnx_to_finn`, which only converts a model
    that has `Quant`, `Trunc` or "BinaryQuant" nodes (QONNX's op is `BipolarQuant`): a
    network quantized with `BipolarQuant` alone (our bipolar TFC/LFC) passes through it
    unconverted and fails in `step_streamline` ("Could not find upstream bipolar
    MultiThreshold"). Runs the same conversion (QONNX cleanup + ConvertQONNXtoFINN with
    FINN's filter) on what is left; a no-op when no BipolarQuant remains."""
    if not model.get_nodes_by_op_type("BipolarQuant"):
        return model
    from qonnx.util.cleanup import cleanup_model
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.qonnx.quant_act_to_multithreshold import default_filter_function_generator

    model = cleanup_model(model)
    return model.transform(ConvertQONNXtoFINN(filter_function=default_filter_function_generator(
        max_multithreshold_bit_width=cfg.max_multithreshold_bit_width)))


def step_bnnforge_clip_xnor_thresholds(model, cfg):
    """FINN build step, right before `step_minimize_bit_width`. An XNOR-popcount MVAU
    (binaryXnorMode) counts matches, acc in [0, MW], so FINN requires its thresholds to be
    non-negative integers (assertion in `get_hw_compatible_threshold_tensor`). FINN's
    `RoundAndClipThresholds` makes them so, but `step_minimize_bit_width` runs
    `MinimizeWeightBitWidth` (which reads them) first, so an always-on or never-on channel
    (threshold below 0 or above MW: random-init exports, dead neurons) fails there with a
    bare AssertionError. Ceil and clip to [0, MW + 1]: exact, as acc is an integer in
    [0, MW] (acc >= T <=> acc >= ceil(T); T <= 0 always fires, T > MW never)."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if not node.op_type.startswith("MVAU") or len(node.input) < 3:
            continue
        inst = getCustomOp(node)
        if inst.get_nodeattr("binaryXnorMode") != 1 or inst.get_nodeattr("noActivation") == 1:
            continue
        t = model.get_initializer(node.input[2])
        if t is None:
            continue
        mw = inst.get_nodeattr("MW")
        model.set_initializer(node.input[2], np.clip(np.ceil(t), 0, mw + 1).astype(np.float32))
    return model


_OUR_STEPS = {f.__name__: f for f in (step_bnnforge_unsigned_quant_relu, step_bnnforge_bipolar_qonnx_to_finn,
                                      step_bnnforge_clip_xnor_thresholds)}


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
        if str(key).startswith("MVTUSparse_"):
            raise BnnforgeError(f"{source}: {key} is a block-sparse layer (binary-domain or grouped weights); "
                                "FINN has no block-sparse unit and the FINN path here takes dense binary "
                                "layers (MVTU_<i>) only: build this network with bnnforge")
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
def _with_our_steps(finn_steps: list[str]) -> list[str]:
    """FINN's step names with ours around them (see the step functions above)."""
    out = ["step_bnnforge_unsigned_quant_relu"]
    for s in finn_steps:
        if s == "step_minimize_bit_width":
            out.append("step_bnnforge_clip_xnor_thresholds")
        out.append(s)
        if s == "step_qonnx_to_finn":
            out.append("step_bnnforge_bipolar_qonnx_to_finn")
    return out


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
        "steps": _with_our_steps(FINN_ESTIMATE_STEPS + (FINN_HW_STEPS if hw else [])),
        "save_intermediate_models": True,
        "enable_build_pdb_debug": False,  # FINN's default drops a failed step into pdb
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
    steps = [_OUR_STEPS.get(s, s) for s in cfg.pop("steps")]
    cfg["generate_outputs"] = [bdc.DataflowOutputType(o) for o in cfg["generate_outputs"]]
    cfg["shell_flow_type"] = bdc.ShellFlowType(cfg["shell_flow_type"])
    rc = build_dataflow.build_dataflow_cfg(prep["model"], bdc.DataflowBuildConfig(steps=steps, **cfg))
    if rc != 0:  # FINN prints the traceback and returns -1 instead of raising
        raise BnnforgeError(f"FINN's build_dataflow failed (returned {rc}); see the traceback above and "
                            f"{cfg['output_dir']}/build_dataflow.log")
    return rc


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


def finn_only_layers(finn_output_dir) -> dict:
    """FINN's estimated layers without a counterpart in our build, {name: cycles}: the input
    quantizer (`Thresholding_*`, host side in our flow) and output scale/bias
    (`Elementwise*`), which FINN's step_convert_to_hw puts into the dataflow partition."""
    finn = json.loads((Path(finn_output_dir) / "report" / "estimate_layer_cycles.json").read_text())
    return {k: int(v) for k, v in finn.items() if our_node_name(k) is None}
