"""Clock each generated design can meet, and frames/s at that clock.

For each network: cycles/frame (ideal), Yosys synth_xilinx LUT/FF/BRAM18, the worst
per-stage xc7 logic delay from Yosys `sta` (cells only, no routing) and the post-route
Fmax of the whole design on an ECP5 LFE5U-85F (nextpnr-ecp5), with frames/s at each.
Beside them: the figures measured on this design before timing work began (issue 14's
baseline, same tools) and BNN-PYNQ's measured rates on the xc7z020.

    .venv/bin/python benchmarks/timing.py [--nets tfc,digits_mlp] [--timing both|sta|pnr] [--clk-period-ns 5]

The designs are built for --clk-period-ns (FINN's synth_clk_period_ns, default 5 ns: the
200 MHz class BNN-PYNQ's LFC runs at), which sets each MVTU's tree pipelining.

LFC and CNV place and route for tens of minutes here; pass them explicitly
(`--nets lfc,cnv`) when there is time.  `--pnr-stages cnv` places and routes each
matrix and pool stage of the named nets alone (the stage module with the parameters
the generated top gives it) instead of the whole design, and prints a row per stage:

    .venv/bin/python benchmarks/timing.py --nets cnv --timing sta --pnr-stages cnv

`--timing none` skips the whole-design estimates (resources and the per-stage rows only):
the whole CNV's per-stage `sta` alone takes most of an hour here.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

NETS = {  # topology, activation, folding file, input shape
    "tfc": ("tfc", "bipolar", "tfc_finn_examples.json", (1, 1, 28, 28)),
    "digits_mlp": ("digits_mlp", "unipolar", "digits_mlp.json", (1, 1, 8, 8)),
    "lfc": ("lfc", "bipolar", "lfc_bnn_pynq.json", (1, 1, 28, 28)),
    "cnv": ("cnv", "bipolar", "cnv_bnn_pynq.json", (1, 3, 32, 32)),
}
# Measured before the timing work (issue 14), same yowasp tools and foldings: post-route
# Fmax of the whole design on the ECP5, and the slowest stage's xc7 logic delay.
BASELINE_ECP5_MHZ = {"tfc": 34.6, "digits_mlp": 54.4, "lfc": 32.7}
BASELINE_STA_NS = {"tfc": 4.31, "digits_mlp": 4.08}
# Yosys synth_xilinx LUTs before the timing work (issue 14's "today")
BASELINE_LUT = {"tfc": 7_060, "lfc": 20_061, "cnv": 14_988}
# Measured rates of the reference designs (frames/s): BNN-PYNQ's LFC and CNV on a PYNQ-Z1
# (xc7z020), finn-examples' tfc-w1a1 at 100 MHz; see /work/shared/reference/anchors.md
REFERENCE_FPS = {"tfc": (837_019, "finn-examples"), "lfc": (356_633, "BNN-PYNQ"), "cnv": (9_150, "BNN-PYNQ")}


def _build(net: str, tmp: Path, clk_period_ns: float) -> Path:
    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config
    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model, randomize_batchnorm
    from bnnforge.resources import folding_config

    topo, act, folding, shape = NETS[net]
    m = build_model(topo, act)
    randomize_batchnorm(m, torch.Generator().manual_seed(0))
    m.eval()
    export_qonnx(m, tmp / f"{net}.onnx", shape)
    out = tmp / net
    cfg = load_config(None, model=str(tmp / f"{net}.onnx"), output_dir=str(out), name=net,
                      folding_config_file=str(folding_config(folding)), synth_clk_period_ns=clk_period_ns,
                      steps=["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"])
    build(cfg, progress=False)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", default="tfc,digits_mlp")
    ap.add_argument("--timing", default="both", choices=("sta", "pnr", "both", "none"))
    ap.add_argument("--clk-period-ns", type=float, default=5.0)
    ap.add_argument("--pnr-stages", default="",
                    help="comma-separated nets whose matrix/pool stages are placed and routed one by one")
    ap.add_argument("--stage-kinds", default="mvtu,pool,window", help="stage kinds --pnr-stages times")
    a = ap.parse_args()
    from bnnforge.hw.synth import synthesize
    from bnnforge.hw.timing import build_timing, stage_pnr_fmax

    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-timing-"))
    rows = []
    stage_rows = []
    # generate every design before timing any, so the RTL measured is the one
    # checked out when the run started
    builds = {}
    for net in a.nets.split(","):
        t0 = time.perf_counter()
        builds[net] = (_build(net, tmp, a.clk_period_ns), time.perf_counter() - t0)
    for net, (b, build_s) in builds.items():
        t0 = time.perf_counter() - build_s
        rtl = b / "rtl"
        manifest = json.loads((rtl / "manifest.json").read_text())
        r = synthesize([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
        t = build_timing(b, a.timing) if a.timing != "none" else {"cycles_per_frame": manifest[
            "ideal_cycles_per_frame"]}
        sta, pnr = t.get("sta", {}), t.get("pnr", {})
        worst = next((s for s in sta.get("stages", []) if s["stage"] == sta.get("worst_stage")), {})
        rows.append((net, t["cycles_per_frame"], r.total.lut_total, BASELINE_LUT.get(net), r.total.ff,
                     r.total.bram18,
                     worst.get("logic_delay_ns"), BASELINE_STA_NS.get(net), sta.get("fmax_mhz"),
                     sta.get("frames_per_s"), pnr.get("fmax_mhz"), pnr.get("frames_per_s"),
                     BASELINE_ECP5_MHZ.get(net),
                     (f"{REFERENCE_FPS[net][0]:,} ({REFERENCE_FPS[net][1]})" if net in REFERENCE_FPS else None),
                     f"{pnr.get('start')} -> {pnr.get('end')}",
                     time.perf_counter() - t0))
        if a.timing != "none":
            print(f"{net}: {(b / 'report' / 'timing.md').read_text()}", flush=True)
        if net in a.pnr_stages.split(","):
            kinds = a.stage_kinds.split(",")
            for st in manifest["stages"]:
                if st["kind"] not in kinds:
                    continue
                p = stage_pnr_fmax(rtl, manifest, st["index"])
                u = p["utilization"]
                stage_rows.append((net, st["index"], st["module"], st.get("source", ""), p["fmax_mhz"],
                                   u.get("TRELLIS_COMB"), u.get("TRELLIS_FF"), u.get("DP16KD"),
                                   f"{p['start']} -> {p['end']}", p["synth_seconds"] + p["pnr_seconds"]))
                print(f"{net} stage {st['index']} ({st['module']}): {p['fmax_mhz']} MHz, "
                      f"{p['start']} -> {p['end']}, {u}", flush=True)
    print(f"(built for synth_clk_period_ns = {a.clk_period_ns:g})")
    print("| net | cycles/frame | LUT | LUT before | FF | BRAM18 | worst stage sta ns | before | xc7 logic MHz "
          "| frames/s (xc7 logic) | ECP5 post-route MHz | frames/s (ECP5) | ECP5 MHz before | reference frames/s (measured) "
          "| ECP5 critical path | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        print("| " + " | ".join("-" if v is None else (f"{v:,}" if isinstance(v, int) else
                                                        f"{v:.1f}" if isinstance(v, float) else str(v))
                                for v in row) + " |")

    if stage_rows:
        print("\nStages placed and routed alone (ECP5 LFE5U-85F, nextpnr-ecp5, register to register):")
        print("| net | stage | module | node | ECP5 post-route MHz | LUT4 | FF | DP16KD | critical path | s |")
        print("|---|---:|---|---|---:|---:|---:|---:|---|---:|")
        for row in stage_rows:
            print("| " + " | ".join("-" if v is None else (f"{v:,}" if isinstance(v, int) else
                                                            f"{v:.1f}" if isinstance(v, float) else str(v))
                                    for v in row) + " |")
        # the clock no placed stage allows beyond: an upper bound for the whole design
        # (its links, FIFOs and the wiring between stages are not in these runs)
        for net in dict.fromkeys(r[0] for r in stage_rows):
            timed = [r for r in stage_rows if r[0] == net and r[4]]
            if not timed:
                continue
            slow = min(timed, key=lambda r: r[4])
            cycles = next(r[1] for r in rows if r[0] == net)
            print(f"{net}: slowest stage placed alone {slow[4]:.1f} MHz (stage {slow[1]}, {slow[3]}): "
                  f"{round(slow[4] * 1e6 / cycles):,} frames/s at {cycles:,} cycles/frame "
                  f"(stages alone, not the whole design)")


if __name__ == "__main__":
    main()
