"""Hardware operators, one module per kind: how a node of the hardware graph becomes a
stage of the generated top (hw/codegen.py).

Each module here defines one StageKind subclass and registers it with @register: the
node's op type, the RTL module and library files it needs, `build` (check the node,
write its memory images named from indices only, return the stage: parameters, stream
widths, beats and cycles per frame), the stream it writes (`out_format`: lanes and
bits per lane, which folding and width converters follow) and how far its first output
trails its first input (`lag`, which sizes skip FIFOs). Modules are found by scanning
this package, so a new operator is a new module here, its RTL file and its test.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from bnnforge.errors import BnnforgeError

# register stages of a unit, FIFOs and converters on a path, in cycles
PIPELINE_SLACK_CYCLES = 16


@dataclass
class BuildContext:
    model: onnx.ModelProto
    out_dir: Path
    stage_index: int = 0      # index of the stage being built (s<i> in the top)
    layer_index: int = 0      # index among matrix layers (layer<i>_*.mem, the manifest's layers)
    clk_period_ns: float | None = None   # target clock (FINN's synth_clk_period_ns); None: 200 MHz-class


class StageKind:
    op_type = ""
    module = ""
    files: tuple = ()
    ports_in = 1
    layer = False             # a matrix layer: listed in the manifest's `layers`

    def build(self, ctx: BuildContext, node: onnx.NodeProto, a: dict) -> dict:
        raise NotImplementedError

    def out_format(self, a: dict) -> tuple[int, int]:
        """(lanes, bits per lane) of the stream this node writes."""
        raise NotImplementedError

    def lag(self, stage: dict, ideal: int) -> float:
        """Fraction of a frame period between this stage's first input and first output
        at the ideal rate."""
        return PIPELINE_SLACK_CYCLES / ideal


_REGISTRY: dict[str, StageKind] = {}
_DISCOVERED = False


def register(cls):
    _REGISTRY[cls.op_type] = cls()
    return cls


def _discover() -> None:
    global _DISCOVERED
    if not _DISCOVERED:
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
        _DISCOVERED = True


def stage_kinds() -> dict[str, StageKind]:
    _discover()
    return dict(_REGISTRY)


def stage_kind(op_type: str, node_name: str = "") -> StageKind:
    kinds = stage_kinds()
    if op_type not in kinds:
        from bnnforge.hw.verilog_names import comment_safe
        raise BnnforgeError(f"node {comment_safe(node_name)!r}: op {comment_safe(op_type)} has no Verilog module")
    return kinds[op_type]


def stream_out_format(node: onnx.NodeProto) -> tuple[int, int]:
    """(lanes, bits per lane) of the stream a hardware node writes."""
    from bnnforge.hw.hwgraph import get_attrs
    return stage_kind(node.op_type, node.name).out_format(get_attrs(node))
