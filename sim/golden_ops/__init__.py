"""The golden model's operators, one module per operator kind (streamlined and hardware
forms together): each registers, with @golden, a function (ctx, node, attrs, inputs) ->
output array (or list of arrays, one per node output) computed from the node and its
initializers in this package's own code, never with the compiler's helpers, so that it
stays an independent reference. Modules are found by scanning this package."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import onnx

from bnnforge.errors import BnnforgeError

_REGISTRY: dict = {}
_DISCOVERED = False


@dataclass
class GoldenContext:
    model: onnx.ModelProto
    n: int                       # frames in the batch
    fault: str | None = None     # test-only injected fault (sim.golden.FAULTS)


def golden(*op_types: str):
    def deco(fn):
        for op in op_types:
            _REGISTRY[op] = fn
        return fn
    return deco


def golden_op(op_type: str, node_name: str = ""):
    global _DISCOVERED
    if not _DISCOVERED:
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
        _DISCOVERED = True
    if op_type not in _REGISTRY:
        raise BnnforgeError(f"node {node_name!r}: unknown op {op_type}")
    return _REGISTRY[op_type]
