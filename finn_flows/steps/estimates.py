"""step_estimates: cycles, throughput, memory and resources per layer (JSON + table).

Each operator module estimates its own node (finn_flows/operators/; the shared
first-order costs and how they were fitted to Yosys are in operators/_costs.py).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import onnx

from bnnforge.hw.hwgraph import get_attrs

from ..operators import for_hw


def interconnect_estimate(model: onnx.ModelProto, fifo_depth: int = 2) -> dict:
    """The FIFOs and width converters between the stages (as codegen sizes them; skip
    FIFOs of residual branches can hold most of a frame), in LUTs fitted to Yosys
    synth_xilinx on a residual net's FIFOs (2 to 433 words deep, 2 to 4 bits wide, within
    6 LUT): a FIFO costs 8 + 3 * clog2(depth) LUT of pointers and flags plus its words as
    LUT RAM at 16 bits per LUT; a converter about 1.5 LUT per bit of its buffer."""
    from bnnforge.hw.codegen import plan_links

    links = plan_links(model, fifo_depth)
    fifo_luts = sum(8 + 3 * max(1, (lk["depth"] - 1).bit_length()) + math.ceil(lk["width"] * lk["depth"] / 16)
                    for lk in links)
    conv = [lk["converter"] for lk in links if lk["converter"]]
    conv_luts = sum(int(10 + 1.5 * (a + b + min(a, b))) for a, b in conv)
    return {"fifos": len(links), "fifo_bits": sum(lk["width"] * lk["depth"] for lk in links),
            "converters": len(conv), "est_luts": fifo_luts + conv_luts}


def layer_estimates(model: onnx.ModelProto, fclk_mhz: float, fifo_depth: int = 2) -> dict:
    layers = []
    for n in model.graph.node:   # each operator module's estimate (finn_flows/operators/)
        op = for_hw(n.op_type)
        e = op.estimate(n.name, get_attrs(n)) if op is not None else None
        if e is not None:
            layers.append(e)
    ideal = max(l["cycles"] for l in layers)
    links = interconnect_estimate(model, fifo_depth)
    return {
        "layers": layers,
        "cycles_per_frame_ideal": ideal,
        "bottleneck": [l["name"] for l in layers if l["cycles"] == ideal],
        "fclk_mhz": fclk_mhz,
        # at the target clock, which nothing has measured yet: the synth step's timing
        # (report/timing.json) gives the clock the RTL allows (hw/throughput.py)
        "fps_ideal": fclk_mhz * 1e6 / ideal,
        "fps_clock": "assumed target clock (not measured)",
        "weight_bits_total": sum(l["weight_bits"] for l in layers),
        "interconnect": links,
        "est_luts_total": sum(l["est_luts"] for l in layers) + links["est_luts"],
        "est_bram18_total": sum(l["est_bram18"] for l in layers),
    }


def format_table(est: dict, tp: dict | None = None) -> str:
    """The per-layer table; frames/s at *tp*'s clock (hw/throughput.py), else at the
    build's target clock marked as assumed."""
    from bnnforge.hw.throughput import throughput

    tp = tp or throughput(est["cycles_per_frame_ideal"], None, est["fclk_mhz"])
    rows = ["| layer | MW x MH | SIMD | PE | mode | pixels | cycles | weight bits | est. LUT | est. BRAM18 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for l in est["layers"]:
        pe = l["PE"] if l["PE"] else "-"
        rows.append(f"| {l['name']} | {l['MW']} x {l['MH']} | {l['SIMD']} | {pe} | {l['mode']} | "
                    f"{l.get('pixels', 1):,} | {l['cycles']:,} | {l['weight_bits']:,} | {l['est_luts']:,} | "
                    f"{l['est_bram18']} |")
    rows.append(f"\nIdeal cycles per frame: {est['cycles_per_frame_ideal']:,} "
                f"(bottleneck {', '.join(est['bottleneck'])}); {tp['text']}. "
                f"Estimated {est['est_luts_total']:,} LUT "
                f"({est['interconnect']['est_luts']:,} of them in {est['interconnect']['fifos']} FIFOs and "
                f"{est['interconnect']['converters']} width converters), {est['est_bram18_total']} BRAM18.")
    return "\n".join(rows) + "\n"


def write_markdown(report_dir: Path, est: dict, tp: dict | None = None) -> None:
    (Path(report_dir) / "estimates.md").write_text(
        format_table(est, tp) + "\n![cycles, LUT and BRAM per layer](estimates.png)\n")


def plot_layers(est: dict, path: Path, target: int | None = None) -> None:
    """Bar charts per layer: ideal cycles per frame (with the target, if any),
    estimated LUTs and BRAM18."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [l["name"] for l in est["layers"]]
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) + 1.5), 7.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots(3, 1, sharex=True)
    ax[0].bar(names, [l["cycles"] for l in est["layers"]], color="tab:blue")
    ax[0].set_title("cycles per frame (ideal)")
    if target:
        ax[0].axhline(target, color="tab:red", linestyle="--", label=f"target {target:,}")
        ax[0].legend(fontsize=7)
    ax[1].bar(names, [l["est_luts"] for l in est["layers"]], color="tab:orange")
    ax[1].set_title(f"estimated LUT (total {est['est_luts_total']:,})")
    ax[2].bar(names, [l["est_bram18"] for l in est["layers"]], color="tab:green")
    ax[2].set_title(f"estimated BRAM18 (total {est['est_bram18_total']})")
    ax[2].tick_params(axis="x", rotation=60, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def step_estimates(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    from .target_fps_parallelization import target_cycles

    est = layer_estimates(model, cfg.fclk_mhz, cfg.fifo_depth)
    out = Path(cfg.build_dir) / "report"
    out.mkdir(exist_ok=True)
    (out / "estimates.json").write_text(json.dumps(est, indent=2))
    write_markdown(out, est)
    plot_layers(est, out / "estimates.png", target_cycles(cfg))
    return model
