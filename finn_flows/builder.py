"""Runs a build: the configured steps in order, every intermediate model saved.

The build happens in a sibling temporary directory that replaces `output_dir` only
when every step succeeded, so a failed build leaves nothing half-written. A bad input
fails with one line naming the step, node or field; an unexpected exception in a step
becomes one line naming the step and the node it was working on, with the traceback
written to `<output_dir>.error.log`.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import onnx
from tqdm import tqdm

from bnnforge.errors import BnnforgeError, internal_error
from .config import BuildConfig
from .report_html import write_build_report

# Graph-size bounds checked before any step runs. The steps are quadratic in the node
# count (qonnx's cleanup re-infers every shape per transformation), so an unbounded
# chain means an unbounded build; the largest reference network (CNV) has 9 matrix
# layers and about 80 nodes.
MAX_MATRIX_LAYERS = 64
MAX_GRAPH_NODES = 1024
MATRIX_OPS = ("MatMul", "Gemm", "Conv")


def step_function(name: str):
    module = importlib.import_module(f"bnnforge.finn_flows.steps.{name}")
    return getattr(module, f"step_{name}")


def load_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise BnnforgeError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, ...
        raise BnnforgeError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0][:200]})")
    check_graph_size(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # ValidationError, ...
        raise BnnforgeError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0][:200]})")
    for t in model.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            import numpy as np
            from onnx import numpy_helper

            try:
                values = numpy_helper.to_array(t)
            except Exception as e:  # raw data of the wrong length, ...
                raise BnnforgeError(f"{path}: initializer {t.name!r} cannot be read ({str(e).splitlines()[0][:150]})")
            if not np.all(np.isfinite(values)):
                raise BnnforgeError(f"{path}: initializer {t.name!r} holds NaN or infinite values")
    inits = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in inits]
    if len(real_inputs) != 1 or len(model.graph.output) != 1:
        raise BnnforgeError(f"{path}: expected one graph input and one output")
    return model


def check_graph_size(model: onnx.ModelProto, path) -> None:
    """Refuse a graph above the stated bounds before any work on it."""
    nodes = model.graph.node
    if len(nodes) > MAX_GRAPH_NODES:
        raise BnnforgeError(f"{path}: {len(nodes)} nodes; bnnforge compiles graphs of at most "
                            f"{MAX_GRAPH_NODES} nodes")
    layers = sum(n.op_type in MATRIX_OPS for n in nodes)
    if layers > MAX_MATRIX_LAYERS:
        raise BnnforgeError(f"{path}: {layers} matrix layers (MatMul/Gemm/Conv); bnnforge compiles networks "
                            f"of at most {MAX_MATRIX_LAYERS}")


def error_log_path(out_dir: Path) -> Path:
    """Where an internal error of a build leaves its traceback: beside the output
    directory (`<out>.error.log`), since a failed build writes nothing into it."""
    return out_dir.parent / f"{out_dir.name}.error.log"


def build(cfg: BuildConfig, progress: bool = True) -> dict:
    """Run the build; returns a summary (steps, seconds, output directory)."""
    out_dir = Path(cfg.output_dir).resolve()
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BnnforgeError(f"{parent}: cannot create output directory ({e.strerror})")
    if not os.access(parent, os.W_OK):
        raise BnnforgeError(f"{parent}: output directory is not writable")
    model = load_model(cfg.model)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    cfg.build_dir = str(work)
    (work / "intermediate_models").mkdir()
    timings = {}
    t_all = time.perf_counter()
    try:
        bar = tqdm(cfg.steps, desc="build", unit="step", disable=not progress, leave=False)
        for i, name in enumerate(bar):
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            try:
                model = step_function(name)(model, cfg)
            except onnx.shape_inference.InferenceError as e:
                # qonnx's shape inference meets declared shapes that contradict the graph
                raise BnnforgeError(f"{cfg.model}: tensor shapes contradict each other (step {name}: "
                                    f"{str(e).splitlines()[0][:200]})") from None
            except BnnforgeError:
                raise
            except Exception as e:  # a bug here or in a library: one line, the traceback in a log
                raise internal_error(e, f"step {name}", error_log_path(out_dir)) from None
            timings[name] = round(time.perf_counter() - t0, 3)
            onnx.save(model, str(work / "intermediate_models" / f"{i:02d}_{name}.onnx"))
        summary = {"steps": list(cfg.steps), "step_seconds": timings,
                   "build_seconds": round(time.perf_counter() - t_all, 3), "output_dir": str(out_dir)}
        (work / "build_summary.json").write_text(json.dumps(summary, indent=2))
        onnx.save(model, str(work / "final_model.onnx"))
        write_build_report(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
        os.replace(out_dir, old / "x")
        os.replace(work, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out_dir)
    error_log_path(out_dir).unlink(missing_ok=True)  # an earlier failure's log no longer applies
    cfg.build_dir = str(out_dir)
    return summary
