"""step_rtlsim: simulate the generated RTL on N inputs and compare bit-exactly with
the golden model. Inputs: images from `rtlsim_inputs` (.npy, quantized with the
model's own input quantizer), else random integers of the input type."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import get_meta, input_range
from bnnforge.sim.golden import execute, quantize_inputs


def rtlsim_inputs(model: onnx.ModelProto, cfg) -> np.ndarray:
    spec = get_meta(model, "input")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    mw = int(np.prod(dims))  # flat, or a channels-last image streamed pixel by pixel
    if cfg.rtlsim_inputs:
        path = Path(cfg.rtlsim_inputs)
        try:
            images = np.load(path)
        except (OSError, ValueError) as e:
            raise BnnforgeError(f"{path}: cannot read rtlsim inputs ({e})")
        return quantize_inputs(model, images[: cfg.rtlsim_count])
    rng = np.random.default_rng(cfg.seed)
    if spec["kind"] in ("bipolar", "unipolar"):
        return rng.integers(0, 2, size=(cfg.rtlsim_count, mw))
    lo, hi = input_range("int", spec["bits"], spec["signed"])
    return rng.integers(lo, hi + 1, size=(cfg.rtlsim_count, mw))


def step_rtlsim(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    from bnnforge.sim.network import run_network

    q = rtlsim_inputs(model, cfg)
    golden = execute(model, q)
    p = 0.3 if cfg.rtlsim_backpressure else 0.0
    res = run_network(Path(cfg.build_dir) / "rtl", q, golden, p_gap=p, p_stall=p, seed=cfg.seed)
    res.pop("outputs")
    res.pop("labels_rtl")
    out = Path(cfg.build_dir) / "report"
    out.mkdir(exist_ok=True)
    (out / "rtlsim.json").write_text(json.dumps(res, indent=2))
    if res["rtl_mismatches"] or not res["tlast_correct"]:
        raise BnnforgeError(
            f"rtlsim: {res['rtl_mismatches']} output beats differ from the golden model "
            f"(first at beats {res['first_mismatches']}); see {out / 'rtlsim.json'}")
    return model
