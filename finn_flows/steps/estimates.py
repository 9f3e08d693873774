"""step_estimates: cycles, throughput, memory and resources per layer (JSON + table).

Each operator module estimates its own node (finn_flows/operators/; the shared
first-order costs and how they were fitted to Yosys are in operators/_costs.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from bnnforge.hw.hwgraph import get_attrs

from ..operators import for_hw


def layer_estimates(model: onnx.ModelProto, fclk_mhz: float) -> dict:
    layers = []
    for n in model.graph.node:   # each operator module's estimate (finn_flows/operators/)
        op = for_hw(n.op_type)
        e = op.estimate(n.name, get_attrs(n)) if op is not None else None
        if e is not None:
            layers.append(e)
    ideal = max(l["cycles"] for l in layers)
    return {
        "layers": layers,
        "cycles_per_frame_ideal": ideal,
        "bottleneck": [l["name"] for l in layers if l["cycles"] == ideal],
        "fclk_mhz": fclk_mhz,
        "fps_ideal": fclk_mhz * 1e6 / ideal,
        "weight_bits_total": sum(l["weight_bits"] for l in layers),
        "est_luts_total": sum(l["est_luts"] for l in layers),
        "est_bram18_total": sum(l["est_bram18"] for l in layers),
    }


def format_table(est: dict) -> str:
    rows = ["| layer | MW x MH | SIMD | PE | mode | pixels | cycles | weight bits | est. LUT | est. BRAM18 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for l in est["layers"]:
        pe = l["PE"] if l["PE"] else "-"
        rows.append(f"| {l['name']} | {l['MW']} x {l['MH']} | {l['SIMD']} | {pe} | {l['mode']} | "
                    f"{l.get('pixels', 1):,} | {l['cycles']:,} | {l['weight_bits']:,} | {l['est_luts']:,} | "
                    f"{l['est_bram18']} |")
    rows.append(f"\nIdeal cycles per frame: {est['cycles_per_frame_ideal']:,} "
                f"(bottleneck {', '.join(est['bottleneck'])}); at {est['fclk_mhz']:.0f} MHz: "
                f"{est['fps_ideal']:,.0f} frames/s. Estimated {est['est_luts_total']:,} LUT, "
                f"{est['est_bram18_total']} BRAM18.")
    return "\n".join(rows) + "\n"


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

    est = layer_estimates(model, cfg.fclk_mhz)
    out = Path(cfg.build_dir) / "report"
    out.mkdir(exist_ok=True)
    (out / "estimates.json").write_text(json.dumps(est, indent=2))
    (out / "estimates.md").write_text(format_table(est) + "\n![cycles, LUT and BRAM per layer](estimates.png)\n")
    plot_layers(est, out / "estimates.png", target_cycles(cfg))
    return model
