"""Build configuration: a plain YAML or JSON file, FINN's key names where FINN has one."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from bnnforge.errors import BnnforgeError

ALL_STEPS = ["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding", "estimates",
             "codegen", "rtlsim", "synth"]
DEFAULT_STEPS = ALL_STEPS[:-1]


@dataclass
class BuildConfig:
    model: str                                   # QONNX file exported by `bnnforge export`
    output_dir: str
    name: str = "bnn"                            # top-level module prefix (sanitized before use)
    folding_config_file: str | None = None       # FINN-style folding JSON
    folding: dict | None = None                  # or inline
    target_fps: float | None = None              # or: choose the folding for this throughput (FINN's key)
    target_cycles_per_frame: int | None = None   # the same target in cycles
    synth_clk_period_ns: float = 10.0
    fpga_part: str = "xc7z020clg400-1"
    steps: list = field(default_factory=lambda: list(DEFAULT_STEPS))
    label_select: bool = True
    fifo_depth: int = 2                          # stream FIFO between layers
    rtlsim_inputs: str | None = None             # .npy of float images for rtlsim (else random)
    rtlsim_count: int = 200
    rtlsim_backpressure: bool = False
    seed: int = 0
    # filled in by the builder
    folding_source: str | None = None
    build_dir: str | None = None

    @property
    def fclk_mhz(self) -> float:
        return 1000.0 / self.synth_clk_period_ns


def load_config(path: str | Path | None = None, **overrides) -> BuildConfig:
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BnnforgeError(f"{path}: build configuration not found")
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise BnnforgeError(f"{path}: cannot parse build configuration: {str(e).splitlines()[0]}")
        if not isinstance(data, dict):
            raise BnnforgeError(f"{path}: build configuration must be a mapping of keys to values")
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(BuildConfig)} - {"folding_source", "build_dir"}
    for k in data:
        if k not in known:
            raise BnnforgeError(f"{path or 'config'}: unknown key {k!r}; known keys: {', '.join(sorted(known))}")
    for k in ("model", "output_dir"):
        if k not in data:
            raise BnnforgeError(f"{path or 'config'}: missing required key {k!r}")
    cfg = BuildConfig(**data)
    for s in cfg.steps:
        if s not in ALL_STEPS:
            raise BnnforgeError(f"{path or 'config'}: unknown step {s!r}; steps: {', '.join(ALL_STEPS)}")
    if (cfg.target_fps is not None or cfg.target_cycles_per_frame is not None) \
            and "apply_folding" in cfg.steps and "target_fps_parallelization" not in cfg.steps:
        raise BnnforgeError(f"{path or 'config'}: a throughput target needs the step target_fps_parallelization "
                            "before apply_folding")
    if not (isinstance(cfg.synth_clk_period_ns, (int, float)) and cfg.synth_clk_period_ns > 0):
        raise BnnforgeError(f"{path or 'config'}: synth_clk_period_ns must be a positive number")
    if cfg.folding_config_file and cfg.folding is None:
        fpath = Path(cfg.folding_config_file)
        if path is not None and not fpath.is_absolute() and not fpath.exists():
            fpath = Path(path).parent / fpath
        cfg.folding = load_folding(fpath)
        cfg.folding_source = str(fpath)
    return cfg


def load_folding(path: Path) -> dict:
    if not path.is_file():
        raise BnnforgeError(f"{path}: folding configuration not found")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise BnnforgeError(f"{path}: not valid JSON: {e}")
    if not isinstance(data, dict):
        raise BnnforgeError(f"{path}: folding configuration must be a JSON object")
    return data
