"""step_codegen: Verilog top level, library modules and memory images into <build>/rtl."""
from pathlib import Path

import onnx

from bnnforge.hw.codegen import generate


def step_codegen(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    generate(model, Path(cfg.build_dir) / "rtl", name=cfg.name, fifo_depth=cfg.fifo_depth,
             clk_period_ns=cfg.synth_clk_period_ns)
    return model
