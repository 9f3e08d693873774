"""Does the design fit the xc7z020? Checked before any (multi-hour) Vivado run.

Accelerator: Yosys `synth_xilinx` of the DMA wrapper with the accelerator inside
(hw/synth.py), i.e. everything we generate. Around it, Vivado adds IP we cannot
synthesize here; for that we add a fixed ALLOWANCE. It is a rounded-up budget for the
block design of hw/vivado/project.py (one AXI DMA in simple mode with 64-bit-or-less
streams and no scatter-gather, two AXI interconnects: GP0 to the DMA's AXI-Lite port
and the DMA's two masters to HP0, one proc_sys_reset); the PS7 itself is hard logic.
It is deliberately generous (Xilinx's product guides list a simple-mode AXI DMA at
around 1-2k LUTs and a small interconnect below 1k); replace it with the figures of
`output/utilization.rpt` after a first real run.

Yosys numbers are synthesis estimates: Vivado's results differ (README: LFC Yosys
0.71x Vivado's LUTs for BNN-PYNQ), which is one more reason for the margin below.
"""
from __future__ import annotations

import json
from pathlib import Path

from bnnforge.errors import BnnforgeError

ALLOWANCE = {"lut": 5000, "ff": 7000, "bram18": 6, "dsp": 0}
# Above this share of LUTs, placement and routing at the target clock become unlikely
# to close on a 7-series part; we warn, not refuse.
WARN_PERCENT = 80.0


def estimate(project_dir: str | Path, flatten: bool = False) -> dict:
    """Yosys estimate of <project>/src (wrapper top), plus the allowance, vs. the part."""
    from bnnforge.hw.synth import XC7Z020, SynthError, synthesize

    project_dir = Path(project_dir)
    pj = json.loads((project_dir / "project.json").read_text())
    src = project_dir / "src"
    work = project_dir / "yosys"
    try:
        res = synthesize([src / f for f in pj["verilog"]], pj["wrapper"], workdir=work,
                         data_files=[src / f for f in pj["mem"]], flatten=flatten)
    except SynthError as e:
        raise BnnforgeError(f"{project_dir}: Yosys failed: {str(e).splitlines()[0]}")
    t = res.total
    accel = {"lut": t.lut_total, "ff": t.ff, "bram18": t.bram18, "dsp": t.dsp}
    total = {k: accel[k] + ALLOWANCE[k] for k in accel}
    caps = {"lut": XC7Z020["lut"], "ff": XC7Z020["ff"], "bram18": XC7Z020["bram18"], "dsp": XC7Z020["dsp"]}
    pct = {k: round(100.0 * total[k] / caps[k], 1) for k in total}
    over = [k for k in total if total[k] > caps[k]]
    warn = [k for k in total if k not in over and pct[k] > WARN_PERCENT]
    report = {"part": pj["part"], "accelerator_yosys": accel, "allowance_dma_interconnect": dict(ALLOWANCE),
              "total": total, "capacity": caps, "percent": pct, "fits": not over, "over": over,
              "warn": warn, "yosys_seconds": round(res.elapsed_s, 1)}
    (project_dir / "capacity.json").write_text(json.dumps(report, indent=2) + "\n")
    (project_dir / "capacity.md").write_text(format_report(report))
    return report


def format_report(r: dict) -> str:
    rows = ["| resource | accelerator (Yosys) | + DMA/interconnect allowance | total | xc7z020 | used |",
            "|---|---|---|---|---|---|"]
    for k in ("lut", "ff", "bram18", "dsp"):
        rows.append(f"| {k.upper()} | {r['accelerator_yosys'][k]:,} | {r['allowance_dma_interconnect'][k]:,} | "
                    f"{r['total'][k]:,} | {r['capacity'][k]:,} | {r['percent'][k]:.1f}% |")
    verdict = ("fits" if r["fits"] else "DOES NOT FIT (" + ", ".join(r["over"]) + ")")
    if r["warn"]:
        verdict += f"; above {WARN_PERCENT:.0f}% for {', '.join(r['warn'])}: routing may not close timing"
    return "\n".join(rows) + f"\n\nVerdict ({r['part']}): {verdict}.\n"


def require_fit(report: dict, project_dir) -> list[str]:
    """Raise when the estimate exceeds the part; return warnings (one line each) otherwise."""
    t, c, p = report["total"], report["capacity"], report["percent"]
    if not report["fits"]:
        k = report["over"][0]
        raise BnnforgeError(f"{Path(project_dir) / 'capacity.json'}: the design does not fit {report['part']}: "
                            f"{k.upper()} {t[k]:,} of {c[k]:,} ({p[k]:.0f}%; Yosys estimate + "
                            f"{report['allowance_dma_interconnect'][k]:,} DMA/interconnect allowance); "
                            f"lower PE/SIMD before a Vivado run")
    return [f"warning: {k.upper()} {t[k]:,} of {c[k]:,} ({p[k]:.0f}%) on {report['part']}: "
            f"Vivado may not close timing" for k in report["warn"]]
