"""Exact QONNX export for both activation kinds, and an export check.

Brevitas 0.13.4 exports every 1-bit activation quantizer as BipolarQuant, also
unsigned ones, so a {0,1} activation silently becomes {-1,+1} in the exported
graph. `BnnQONNXManager` registers an activation handler that emits
`Quant(bit_width=1, signed=0)` for unsigned 1-bit quantizers instead.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from brevitas.export.onnx.qonnx.function import BrevitasQuantOp
from brevitas.export.onnx.qonnx.handler import BrevitasActQuantProxyHandler
from brevitas.export.onnx.qonnx.manager import QONNXDynamoManager, QONNXManager

from .errors import BnnforgeError


class UnsignedBinaryAwareActQuantHandler(BrevitasActQuantProxyHandler):
    """Stock handler, except that an unsigned 1-bit activation becomes a Quant node."""

    def prepare_for_export(self, module):
        super().prepare_for_export(module)
        if module.is_quant_enabled and self.symbolic_kwargs["bit_width"] == 1 \
                and not self.symbolic_kwargs["signed"]:
            self.quant_op = BrevitasQuantOp


class BnnQONNXManager(QONNXManager):
    handlers = [UnsignedBinaryAwareActQuantHandler] + [
        h for h in QONNXManager.handlers if h is not BrevitasActQuantProxyHandler]


class BnnQONNXDynamoManager(QONNXDynamoManager):
    """The same handlers on Brevitas' torch.export (dynamo) path."""
    handlers = BnnQONNXManager.handlers


def export_qonnx(model: torch.nn.Module, path: str | os.PathLike, input_shape, dynamo: bool = False) -> Path:
    """Export `model` (in eval mode) to a QONNX file at `path`, atomically.

    Uses the TorchScript exporter (dynamo=False) by default: with the dynamo exporter
    Brevitas 0.13.4 bakes the batch size into Reshape and emits bias-less Gemm.
    dynamo=True uses the torch.export (dynamo) exporter, Brevitas' own default on
    PyTorch >= 2.9, with the same quantizer handlers.
    """
    path = Path(path)
    out_dir = path.parent if str(path.parent) else Path(".")
    # Missing folders are created; on failure the ones created here are removed again,
    # so a failed export leaves nothing behind.
    created = next((p for p in reversed([out_dir, *out_dir.parents]) if not p.exists()), None)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in [out_dir, *out_dir.parents] if p.exists() and not p.is_dir())
        raise BnnforgeError(f"{out_dir}: output directory is not writable ({blocker} is a file)") from None
    except OSError as e:
        raise BnnforgeError(f"{out_dir}: cannot create the output directory ({e.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
        raise BnnforgeError(f"{out_dir}: output directory is not writable")
    was_training = model.training
    model.eval()
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out_dir)
    os.close(fd)
    ok = False
    # Modules with an export form of their own (FPReLU) compute it now, from real values:
    # the dynamo exporter traces with fake parameters.
    exporting = [m for m in model.modules() if callable(getattr(m, "prepare_export", None))]
    try:
        for m in exporting:
            m.prepare_export()
        with torch.no_grad():
            if dynamo:
                BnnQONNXDynamoManager.export(model, input_shape=tuple(input_shape), export_path=tmp,
                                             dynamo=True, optimize=True)
            else:
                BnnQONNXManager.export(model, input_shape=tuple(input_shape), export_path=tmp, dynamo=False)
        _tidy_names(tmp)
        os.replace(tmp, path)
        ok = True
    finally:
        for m in exporting:
            m.finish_export()
        # the dynamo exporter writes initializers beside the file first; _tidy_names
        # loads them and saves one self-contained file, so the side file is spare
        for leftover in (tmp, tmp + ".data"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if not ok and created is not None:
            shutil.rmtree(created, ignore_errors=True)
        model.train(was_training)
    return path


def _tidy_names(path: str) -> None:
    """Name the graph input/output 'global_in'/'global_out' as FINN does."""
    import onnx

    m = onnx.load(path)
    renames = {m.graph.input[0].name: "global_in", m.graph.output[0].name: "global_out"}
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.name = renames.get(vi.name, vi.name)
    for node in m.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.save(m, path)


def check_export(model: torch.nn.Module, path: str | os.PathLike, inputs: np.ndarray) -> dict:
    """Run the exported graph with qonnx on `inputs` and compare with torch.

    Returns max abs difference of the outputs and the argmax agreement.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    if not path.is_file():
        raise BnnforgeError(f"{path}: exported model not found")
    wrapper = cleanup_model(ModelWrapper(str(path)))
    in_name, out_name = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    model.eval()
    x = np.asarray(inputs, dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    # The graph was traced with batch 1 (qonnx assumes it in places): one input at a time.
    got = np.concatenate([execute_onnx(wrapper, {in_name: x[i:i + 1]})[out_name] for i in range(len(x))])
    return {
        "inputs": int(x.shape[0]),
        "max_abs_diff": float(np.max(np.abs(ref - got))),
        "argmax_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))),
    }
