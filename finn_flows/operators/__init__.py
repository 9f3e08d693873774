"""Compiler operators, one module per operator kind: how its streamlined nodes become
hardware nodes (`convert`), which folding keys it has and how stream nodes take their
lanes from their neighbours (`derive_folding`), and its cycles and resource estimate
(`estimate`). The Verilog stage of each hardware op lives in hw/stages/, its golden
computation in sim/golden_ops/ (each layer keeps its own code, so that the golden model
stays an independent reference). Modules are found by scanning this package, so an
operator is added by its modules there, its RTL file and its tests, nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

import onnx

from bnnforge.errors import BnnforgeError


@dataclass
class ConvertContext:
    model: onnx.ModelProto
    nodes: list                      # the streamlined nodes, in dataflow order
    inits: dict                      # initializer name -> TensorProto of the new graph
    out_nodes: list = field(default_factory=list)
    layer: int = 0                   # matrix layers so far (MVTU_<layer>, mvtu<layer>_weights)
    pixels: int = 1                  # vectors per frame of the next matrix layer (its window's pixels)

    def next_node(self, i: int):
        return self.nodes[i + 1] if i + 1 < len(self.nodes) else None

    def end_matrix_layer(self) -> None:
        """A matrix unit was emitted: the next one is numbered after it, and reads single
        vectors unless a window sets its pixels again."""
        self.layer += 1
        self.pixels = 1


class Operator:
    qonnx_join_ops: tuple = ()       # QONNX ops joining two streams it recognises (`recognise`)
    streamlined_ops: tuple = ()      # streamlined op types `convert` starts from
    hw_ops: tuple = ()               # hardware op types it owns
    folding_keys: tuple = ()         # FINN folding keys of its hardware node (PE, SIMD)

    def convert(self, ctx: ConvertContext, i: int) -> int:
        """Append the hardware nodes for ctx.nodes[i] (and the nodes it fuses); return how
        many streamlined nodes it consumed."""
        raise NotImplementedError

    def after_folding(self, model, node, src: str) -> None:
        """Recompute attributes that depend on the folding just set."""

    def derive_folding(self, node, producers: dict, readers: dict, src: str) -> None:
        """A stream node's lanes from its neighbours (nodes are visited in dataflow order)."""

    def estimate(self, name: str, a: dict) -> dict | None:
        return None


_BY_JOIN: dict = {}
_BY_STREAMLINED: dict = {}
_BY_HW: dict = {}
_DISCOVERED = False


def register(cls):
    op = cls()
    for t in cls.qonnx_join_ops:
        _BY_JOIN[t] = op
    for t in cls.streamlined_ops:
        _BY_STREAMLINED[t] = op
    for t in cls.hw_ops:
        _BY_HW[t] = op
    return cls


def _discover() -> None:
    global _DISCOVERED
    if not _DISCOVERED:
        for m in pkgutil.iter_modules(__path__):
            if not m.name.startswith("_"):
                importlib.import_module(f"{__name__}.{m.name}")
        _DISCOVERED = True


def for_qonnx_join(node) -> Operator | None:
    """The operator that recognises a QONNX node joining two streams (None: none does)."""
    _discover()
    return _BY_JOIN.get(node.op_type)


def for_streamlined(node) -> Operator:
    _discover()
    if node.op_type not in _BY_STREAMLINED:
        raise BnnforgeError(f"node {node.name!r}: op {node.op_type} has no hardware layer")
    return _BY_STREAMLINED[node.op_type]


def for_hw(op_type: str) -> Operator | None:
    _discover()
    return _BY_HW.get(op_type)


def hw_operators() -> dict:
    _discover()
    return dict(_BY_HW)
