"""step_estimates: cycles, throughput, memory and resources per layer (JSON + table).

Resource model (xc7, first order), fitted to Yosys synth_xilinx of our RTL for LFC
at the BNN-PYNQ folding (hierarchical synthesis, 2026-11): a synapse lane (XNOR/AND,
its share of the popcount tree and of the pipeline registers) costs about 2.6 LUT;
each PE's accumulator and threshold compare about 2 LUT per accumulator bit. Weight
memory goes to BRAM18 (the cheapest RAMB18 aspect ratio, 36x512 ... 1x16K) when it is
deep and large, which matched Yosys' BRAM count for LFC exactly; otherwise it becomes
LUT ROM, costed at one LUT per 32 bits. A k-bit (multi-threshold) output adds per PE
2^k-2 more ACC_BITS-wide comparators (1 LUT per bit) and a (2^k-1)-input popcount, plus
its MH*(2^k-1)*ACC_BITS threshold bits as LUT ROM (not fitted; first order, from the
same per-bit costs). Sliding windows and pools: their line buffers
(BRAM when large, else LUT RAM at 64 bits per LUT) plus address and mux logic.
Block-sparse layers (MVTUSparse): weight bits are the stored blocks only, cycles
max(SF, STEPS) per vector (see _mvtu_sparse_estimate).

Add/subtract lanes (multi-bit inputs) do not cost a flat amount: fitted to Yosys on a
lone 784 x 256 mvtu with 4-bit inputs (2026-12, PE x SIMD = 1 x 784, 4 x 196, 16 x 49,
64 x 49: 15,188 / 12,722 / 11,229 / 52,594 LUT), an input bit of a lane costs
1.42 + 0.354 * log2(SIMD) LUT, so one wide tree costs more than several narrow ones
of the same lanes (the flat 2.6 put PE 1 x SIMD 784 at 8,225 LUT and made automatic
folding pick it). XNOR/AND lanes keep the flat 2.6: the same grid with 1-bit inputs
gave 2,140 (1 x 784) and 2,401 (16 x 49) LUT against 2,102 and 2,462 estimated.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import onnx

from bnnforge.hw.hwgraph import attr_str, get_attrs
from bnnforge.hw.memory_style import bram18_for as _bram18_for
from bnnforge.hw.memory_style import sparse_weights_in_bram, weights_in_bram


def lane_luts(mode: str, pe: int, simd: int, input_bits: int) -> float:
    """LUTs of PE x SIMD synapse lanes and their trees (see the module docstring)."""
    if mode == "addsub":
        return pe * simd * input_bits * (1.42 + 0.354 * math.log2(simd))
    return pe * simd * 2.6


def _mvtu_estimate(name: str, a: dict) -> dict:
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    pixels = a.get("pixels", 1)
    sf, nf = mw // simd, mh // pe
    mode = attr_str(a["mode"])
    depth, width = nf * sf, pe * simd
    wbits = mw * mh
    if weights_in_bram(a):
        bram18, rom_luts = _bram18_for(width, depth), 0
    else:
        bram18, rom_luts = 0, math.ceil(wbits / 32)
    out_mode = attr_str(a["out_mode"])
    # thresholds per output: 1 (threshold), 2^k-1 (multithreshold, k-bit outputs), 0 (accumulator)
    nt = {"threshold": 1, "multithreshold": (1 << int(a.get("out_bits", 1))) - 1}.get(out_mode, 0)
    luts = int(lane_luts(mode, pe, simd, a["input_bits"]) + pe * acc * 2 + rom_luts + 40)
    if out_mode == "multithreshold":
        # each extra threshold: one more ACC_BITS-wide comparator per PE (~1 LUT per bit), an
        # NT-input popcount per PE (~1 LUT per input), its ROM bits at 1 LUT per 32
        luts += int(pe * acc * (nt - 1) + pe * nt + math.ceil(mh * nt * acc / 32))
    return {
        "name": name, "kind": "mvtu", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
        "mode": attr_str(a["mode"]), "acc_bits": acc, "pixels": pixels, "cycles": pixels * sf * nf,
        "weight_bits": wbits, "threshold_bits": mh * acc * nt,
        "out_bits": {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(out_mode, acc),
        "est_luts": luts, "est_bram18": bram18,
    }


def _window_estimate(name: str, a: dict) -> dict:
    """Sliding window: K+1 rows of the input map in a SIMD*EB-wide buffer (BRAM when
    large, else distributed RAM at 64 bits per LUT), plus address/mux logic."""
    c, dim, k, simd, eb = a["C"], a["IFM_DIM"], a["K"], a["SIMD"], a["EB"]
    width = simd * eb
    depth = (k + 1) * (dim + 2 * a["PAD"]) * (c // simd)
    bits = width * depth
    bram18 = _bram18_for(width, depth) if bits >= 16384 else 0
    luts = int(80 + 3 * width + (0 if bram18 else math.ceil(bits / 64)))
    out_beats = a["OFM_DIM"] ** 2 * k * k * c // simd
    in_beats = dim * dim * c // simd
    return {"name": name, "kind": "window", "MW": k * k * c, "MH": c, "PE": 0, "SIMD": simd,
            "mode": f"{k}x{k}/s{a['S']}" + (f" pad {a['PAD']}" if a["PAD"] else ""), "acc_bits": 0,
            "pixels": a["OFM_DIM"] ** 2, "cycles": max(out_beats, in_beats), "weight_bits": 0,
            "threshold_bits": 0, "buffer_bits": bits, "est_luts": luts, "est_bram18": bram18}


def _pool_estimate(name: str, a: dict) -> dict:
    c, dim, p, simd, eb = a["C"], a["IFM_DIM"], a["P"], a["SIMD"], a["EB"]
    bits = (dim // p) * c * eb
    return {"name": name, "kind": "pool", "MW": c, "MH": c, "PE": 0, "SIMD": simd,
            "mode": f"max {p}x{p}", "acc_bits": 0, "pixels": (dim // p) ** 2,
            "cycles": dim * dim * c // simd, "weight_bits": 0, "threshold_bits": 0, "buffer_bits": bits,
            "est_luts": int(30 + 2 * simd * eb + math.ceil(bits / 64)), "est_bram18": 0}


def _mvtu_sparse_estimate(name: str, a: dict) -> dict:
    """Block-sparse unit (mvtu_sparse): only the NNZ stored PE x SIMD blocks are weight
    memory (`weight_bits`; `dense_weight_bits` is what an mvtu would store), plus the
    STEPS-entry schedule ROM, the row constants (sparse01 with bipolar input) and the
    2*SF-word input double buffer. Cycles per vector: max(SF, STEPS). LUTs from the
    same per-lane / per-accumulator-bit costs as the mvtu, plus the shared S term and the
    Q/M scaling (about 2 LUT per accumulator bit each), ROMs at 1 LUT per 32 bits, the
    buffer at 64 bits per LUT; weights in BRAM18 when deep (NNZ >= 128) and large."""
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    pixels = a.get("pixels", 1)
    sf, nf = mw // simd, mh // pe
    nnz, steps = a["NNZ"], a["STEPS"]
    kind = attr_str(a["weight_kind"])
    ib = a["input_bits"] if attr_str(a["mode"]) == "addsub" else 1
    width = pe * simd
    wbits = nnz * width
    sched_bits = steps * (max(1, (sf - 1).bit_length()) + 2)
    rowc_bits = mh * acc if kind == "sparse01" and attr_str(a["input_kind"]) == "bipolar" else 0
    buf_bits = 2 * sf * simd * ib
    out_mode = attr_str(a["out_mode"])
    nt = {"threshold": 1, "multithreshold": (1 << int(a.get("out_bits", 1))) - 1}.get(out_mode, 0)
    if sparse_weights_in_bram(nnz, width):
        bram18, rom_luts = _bram18_for(width, nnz), 0
    else:
        bram18, rom_luts = 0, math.ceil(wbits / 32)
    shared = 2 * acc * (2 if kind == "sparse01" and a["m"] != 0 else 1)
    luts = int(lane_luts(attr_str(a["mode"]), pe, simd, ib) + pe * acc * 4 + shared + rom_luts + math.ceil((sched_bits + rowc_bits) / 32)
               + math.ceil(buf_bits / 64) + pe * acc * max(nt - 1, 0) + 60)
    return {
        "name": name, "kind": "mvtu_sparse", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
        "mode": f"{attr_str(a['mode'])} {kind}", "acc_bits": acc, "pixels": pixels,
        "cycles": pixels * max(sf, steps), "dense_cycles": pixels * sf * nf,
        "weight_bits": wbits, "dense_weight_bits": mw * mh, "schedule_bits": sched_bits,
        "row_const_bits": rowc_bits, "buffer_bits": buf_bits, "nonzero_blocks": nnz,
        "total_blocks": nf * sf, "steps": steps, "threshold_bits": mh * acc * nt,
        "out_bits": {"threshold": 1, "multithreshold": int(a.get("out_bits", 1))}.get(out_mode, acc),
        "est_luts": luts, "est_bram18": bram18,
    }


def _add_estimate(name: str, a: dict) -> dict:
    """Residual add (stream_add): one (EB+1)-bit adder and output register per lane."""
    c, pe, eb = a["C"], a["PE"], a["EB"]
    return {"name": name, "kind": "add", "MW": c, "MH": c, "PE": pe, "SIMD": 0, "mode": "add",
            "acc_bits": eb + 1, "pixels": a["pixels"], "cycles": a["pixels"] * c // pe, "weight_bits": 0,
            "threshold_bits": 0, "est_luts": int(12 + pe * (eb + 1) * 1.5), "est_bram18": 0}


def _thresholding_estimate(name: str, a: dict) -> dict:
    """Standalone requantizer (thresholding): per lane OUT_BITS search stages, each a
    comparator (~1 LUT per bit) and its slice of the thresholds as LUT ROM (1 LUT per
    32 bits), plus the stage registers."""
    c, pe, k, ib = a["C"], a["PE"], a["OUT_BITS"], a["IN_BITS"]
    nt = (1 << k) - 1
    t_bits = max(ib + 1, 2)
    tbits = c * nt * t_bits
    luts = int(20 + pe * k * (t_bits + 1) + math.ceil(tbits / 32))
    return {"name": name, "kind": "thresholding", "MW": c, "MH": c, "PE": pe, "SIMD": 0,
            "mode": f"{k}-bit requantize", "acc_bits": ib, "pixels": a["pixels"],
            "cycles": a["pixels"] * c // pe, "weight_bits": 0, "threshold_bits": tbits,
            "est_luts": luts, "est_bram18": 0}


ESTIMATORS = {"MVTU": _mvtu_estimate, "MVTUSparse": _mvtu_sparse_estimate, "SlidingWindow": _window_estimate,
              "StreamingMaxPool": _pool_estimate, "StreamAdd": _add_estimate,
              "Thresholding": _thresholding_estimate}


def layer_estimates(model: onnx.ModelProto, fclk_mhz: float) -> dict:
    layers = [ESTIMATORS[n.op_type](n.name, get_attrs(n)) for n in model.graph.node if n.op_type in ESTIMATORS]
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
