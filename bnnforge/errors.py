"""Errors every stage raises for bad input: one line naming the node, file or field.

Unexpected exceptions (a bug in bnnforge or in a library under it) are turned into an
:class:`InternalError` whose one line says so and names the log file holding the full
traceback, so a user never sees a Python traceback but can still report one.
"""
from __future__ import annotations

import datetime
import os
import traceback
from pathlib import Path


class BnnforgeError(Exception):
    """Base class of all errors bnnforge reports to users (printed as one line)."""


class InternalError(BnnforgeError):
    """An unexpected exception, with the path of the log that holds its traceback."""

    def __init__(self, message: str, log: Path | None):
        super().__init__(message)
        self.log = log


def onnx_node_in_traceback(exc: BaseException):
    """The innermost ONNX node a frame of the traceback was working on, if any: the
    transformations and steps loop over `graph.node`, so the failing node is a local."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a core dependency
        return None
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, onnx.NodeProto):
                return value
    return None


def model_error(exc: BaseException, what: str) -> BnnforgeError:
    """One-line error for a library failing on the user's model (not on our code): names
    the ONNX node it was at, says what could not be done, and keeps the library's reason."""
    node = onnx_node_in_traceback(exc)
    where = f"node {node.name!r} ({node.op_type}): " if node is not None else ""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return BnnforgeError(f"{where}{what} ({type(exc).__name__}: {first})")


def write_error_log(exc: BaseException, log: Path, context: str) -> Path | None:
    """Write the traceback of *exc* to *log*; returns the path, or None if it cannot be written."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        log.write_text(f"bnnforge internal error, {stamp}, pid {os.getpid()}\n{context}\n\n{text}")
        return log
    except OSError:
        return None


def internal_error(exc: BaseException, where: str, log: Path) -> InternalError:
    """One-line InternalError for an unexpected *exc* raised `in <where>`; the traceback
    goes to *log* (the line names it)."""
    node = onnx_node_in_traceback(exc)
    at = f" at node {node.name!r} ({node.op_type})" if node is not None else ""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    path = write_error_log(exc, log, f"internal error in {where}{at}")
    tail = f"; traceback in {path}" if path else ""
    return InternalError(f"internal error in {where}{at}: {type(exc).__name__}: {first}{tail}", path)
