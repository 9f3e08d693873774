"""The HTML report of a build (`BUILD/report/index.html`) and of the demo
(`OUT/report/index.html`): one self-contained file (inline CSS, charts as inline SVG,
images as base64 PNG, no script, nothing fetched), from the figures the build steps
already wrote (report/estimates.json, rtlsim.json, synth_summary.json,
auto_folding.md, build_summary.json, rtl/manifest.json, Vivado's timing report).

Every string that comes from a model or a file is escaped; links are relative, so
the build directory can be moved or archived with its report.
"""
from __future__ import annotations

import base64
import json
import os
import re
from html import escape
from pathlib import Path
from urllib.parse import quote

from bnnforge.hw.throughput import throughput

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2330;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d5d9e0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d5d9e0;padding:.25em .6em;text-align:right}
th{background:#eef1f6}td.l,th.l{text-align:left}
tr.bottleneck td{background:#fff4e0}
.muted{color:#6b7280}.ok{color:#166534;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1.2em}
.chart{border:1px solid #d5d9e0;padding:.4em;background:#fafbfc}
ul.files{columns:3;font-family:ui-monospace,monospace;font-size:.9em}
pre{background:#f4f6f9;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(v, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"
    return escape(str(v))


def _link(target: Path, report_dir: Path, text: str | None = None) -> str:
    rel = os.path.relpath(target, report_dir).replace(os.sep, "/")
    return f'<a href="{escape(quote(rel))}">{escape(text if text is not None else target.name)}</a>'


def bar_chart(title: str, names: list[str], values: list[float], color: str, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    row, label_w, bar_w = 22, 150, 300
    height = 30 + row * len(names)
    top = max([v for v in values if v is not None] + [1])
    parts = [f'<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 110}" '
             f'height="{height}" viewBox="0 0 {label_w + bar_w + 110} {height}">',
             f'<title>{escape(title)}</title>',
             f'<text x="4" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    for k, (name, v) in enumerate(zip(names, values)):
        y = 26 + k * row
        w = 0 if not v else max(1.0, bar_w * v / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(name[:22])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="12">{_num(v)}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _layers_section(est: dict | None, tp: dict | None = None) -> list[str]:
    if not est:
        return ["<h2>Layers</h2>", '<p class="muted">No estimates (the build ran without the '
                "<code>estimates</code> step).</p>"]
    layers = est["layers"]
    tp = tp or throughput(est["cycles_per_frame_ideal"], None, est["fclk_mhz"])
    out = ["<h2>Layers</h2>", '<table id="layers"><thead><tr><th class="l">layer</th><th class="l">kind</th>'
           '<th>MW x MH</th><th>PE</th><th>SIMD</th><th class="l">mode</th><th>cycles / frame</th>'
           "<th>weight bits</th><th>est. LUT</th><th>est. BRAM18</th></tr></thead><tbody>"]
    bottleneck = set(est.get("bottleneck", []))
    for l in layers:
        cls = "layer bottleneck" if l["name"] in bottleneck else "layer"
        out.append(f'<tr class="{cls}"><td class="l">{escape(str(l["name"]))}</td><td class="l">{escape(str(l["kind"]))}</td>'
                   f'<td>{_num(l["MW"])} x {_num(l["MH"])}</td><td>{_num(l["PE"]) if l["PE"] else "-"}</td>'
                   f'<td>{_num(l["SIMD"])}</td><td class="l">{escape(str(l["mode"]))}</td><td>{_num(l["cycles"])}</td>'
                   f'<td>{_num(l["weight_bits"])}</td><td>{_num(l["est_luts"])}</td><td>{_num(l["est_bram18"])}</td></tr>')
    out.append(f'</tbody><tfoot><tr><td class="l" colspan="6">total</td><td>{_num(est["cycles_per_frame_ideal"])} '
               f'(max)</td><td>{_num(est["weight_bits_total"])}</td><td>{_num(est["est_luts_total"])}</td>'
               f'<td>{_num(est["est_bram18_total"])}</td></tr></tfoot></table>')
    out.append(f'<p>Ideal {_num(est["cycles_per_frame_ideal"])} cycles per frame, bottleneck '
               f'{escape(", ".join(map(str, est.get("bottleneck", []))))}: <span id="throughput">'
               f'{escape(tp["text"])}</span>. The LUT and BRAM figures are the first-order model of the '
               "<code>estimates</code> step, not synthesis.</p>")
    names = [str(l["name"]) for l in layers]
    out.append('<div class="charts">')
    out.append(bar_chart("cycles per frame (ideal)", names, [l["cycles"] for l in layers], "#3b6fb6"))
    out.append(bar_chart(f"estimated LUT (total {est['est_luts_total']:,})", names,
                         [l["est_luts"] for l in layers], "#d9822b"))
    out.append(bar_chart(f"estimated BRAM18 (total {est['est_bram18_total']})", names,
                         [l["est_bram18"] for l in layers], "#3a9a5b"))
    out.append("</div>")
    return out


def _kv_table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f'<tr><th class="l">{escape(k)}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _verdict(bad: int) -> str:
    return f'<span class="ok">{bad}</span>' if bad == 0 else f'<span class="bad">{bad}</span>'


def _rtlsim_section(sim: dict | None) -> list[str]:
    if not sim:
        return ["<h2>RTL simulation</h2>", '<p class="muted">Not simulated in this build (add the '
                "<code>rtlsim</code> step, or run <code>bnnforge sim BUILD --images X.npy</code>).</p>"]
    rows = [("frames", _num(sim.get("frames"))),
            ("outputs differing from the golden model", _verdict(int(sim.get("rtl_mismatches", 0))))]
    for key, label in (("accuracy_torch", "accuracy (torch)"), ("accuracy_golden", "accuracy (golden model)"),
                       ("accuracy_rtl", "accuracy (RTL)")):
        if sim.get(key) is not None:
            rows.append((label, f"{sim[key]:.4f}"))
    if "tlast_correct" in sim:
        rows.append(("TLAST on every frame end", "yes" if sim["tlast_correct"] else '<span class="bad">no</span>'))
    rows += [("cycles per frame, measured", _num(sim.get("cycles_per_frame_measured"), 1)),
             ("cycles per frame, ideal", _num(sim.get("cycles_per_frame_ideal"))),
             ("latency of the first frame (cycles)", _num(sim.get("latency_cycles_first_frame")))]
    wall = sim.get("sim_wall_seconds", sim.get("rtlsim_seconds"))
    if wall is not None:
        rows.append(("simulation wall time (s)", _num(float(wall), 2)))
    return ["<h2>RTL simulation</h2>", "<p>Verilator simulation of the generated Verilog, every output "
            "compared bit-exactly with the golden model.</p>", _kv_table(rows, "rtlsim")]


def _clock_rows(clock: dict | None) -> list[tuple[str, str]]:
    """report/timing.json (hw/timing.py): the clock each estimate allows."""
    rows = []
    sta, pnr = (clock or {}).get("sta"), (clock or {}).get("pnr")
    if sta and sta.get("fmax_mhz"):
        rows.append(("xc7 logic delay (Yosys sta, no routing)",
                     escape(f"{sta['fmax_mhz']} MHz, slowest stage {sta.get('worst_stage')}")))
    if pnr and pnr.get("fmax_mhz"):
        rows.append(("ECP5 post-route Fmax (nextpnr-ecp5)",
                     escape(f"{pnr['fmax_mhz']} MHz, critical path {pnr.get('start')} -> {pnr.get('end')}")))
    return rows


def _synth_section(synth: dict | None, timing: dict | None, clock: dict | None = None) -> list[str]:
    out = ["<h2>Synthesis</h2>"]
    if not synth:
        out.append('<p class="muted">Not synthesized (add the <code>synth</code> step, or run '
                   "<code>bnnforge synth BUILD</code>).</p>")
    else:
        util = synth.get("utilisation_percent") or {}
        rows = []
        for key, label, ukey in (("luts", "LUT", "lut"), ("ffs", "FF", "ff"), ("bram18", "BRAM18", "bram18"),
                                 ("dsp", "DSP48E1", "dsp")):
            if synth.get(key) is not None:
                pct = f" ({util[ukey]:.2f} % of xc7z020)" if isinstance(util.get(ukey), (int, float)) else ""
                rows.append((label, _num(synth[key]) + escape(pct)))
        if synth.get("seconds") is not None:
            rows.append(("Yosys wall time (s)", _num(float(synth["seconds"]), 1)))
        out += ["<p>Yosys <code>synth_xilinx</code> (xc7), hierarchical; no placement or routing.</p>",
                _kv_table(rows, "synth")]
    rows = _clock_rows(clock)
    if rows:
        out += ["<h3>Clock (measured)</h3>", _kv_table(rows, "clock")]
    if timing:
        out += ["<h3>Timing (Vivado)</h3>", _kv_table([(k, escape(v)) for k, v in timing.items()], "timing")]
    return out


def vivado_timing(rpt: Path) -> dict | None:
    """WNS/TNS/WHS from the 'Design Timing Summary' of Vivado's report_timing_summary."""
    try:
        text = rpt.read_text(errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if line.strip().startswith("WNS(ns)") and k + 2 < len(lines):
            heads = re.split(r"\s{2,}", line.strip())   # headers hold single spaces ("TNS Failing Endpoints")
            vals = lines[k + 2].split()
            res = {h: v for h, v in zip(heads, vals) if h in ("WNS(ns)", "TNS(ns)", "WHS(ns)", "THS(ns)")}
            met = re.search(r"All user specified timing constraints are met", text)
            res["constraints"] = "met" if met else "NOT met"
            return res
    return None


def _files_section(build: Path, report_dir: Path) -> list[str]:
    out = ["<h2>Files</h2>"]
    models = sorted((build / "intermediate_models").glob("*.onnx"))
    final = build / "final_model.onnx"
    if models or final.is_file():
        items = [f"<li>{_link(m, report_dir)}</li>" for m in models]
        if final.is_file():
            items.append(f"<li>{_link(final, report_dir)}</li>")
        out += ["<h3>Models (after each step)</h3>", f'<ul class="files" id="models">{"".join(items)}</ul>']
    manifest = _read_json(build / "rtl" / "manifest.json")
    if manifest:
        items = [f"<li>{_link(build / 'rtl' / f, report_dir)}</li>" for f in manifest.get("files", [])
                 if (build / "rtl" / f).is_file()]
        mems = sorted((build / "rtl").glob("*.mem"))
        out += [f"<h3>Verilog (top <code>{escape(str(manifest.get('top', '')))}</code>)</h3>",
                f'<ul class="files" id="verilog">{"".join(items)}</ul>']
        if mems:
            out += ["<h3>Memory images</h3>",
                    f'<ul class="files">{"".join(f"<li>{_link(m, report_dir)}</li>" for m in mems)}</ul>']
    others = [p for p in (build / "build_summary.json", build / "auto_folding.json", build / "report" / "estimates.json",
                          build / "report" / "auto_folding.md", build / "report" / "rtlsim.json",
                          build / "report" / "synth_summary.json", build / "rtl" / "synth.md",
                          build / "vivado" / "output" / "timing_summary.rpt") if p.is_file()]
    if others:
        out += ["<h3>Reports</h3>", f'<ul class="files">{"".join(f"<li>{_link(p, report_dir, str(p.relative_to(build)))}</li>" for p in others)}</ul>']
    return out


def _png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _steps_section(summary: dict | None, auto_folding: Path) -> list[str]:
    out = []
    if summary:
        rows = [(str(s), _num(float(summary.get("step_seconds", {}).get(s, 0.0)), 3)) for s in summary.get("steps", [])]
        rows.append(("total", _num(float(summary.get("build_seconds", 0.0)), 3)))
        out += ["<h2>Build steps</h2>", "<p>Seconds per step.</p>", _kv_table(rows, "steps")]
    if auto_folding.is_file():
        out += ["<h3>Automatic folding</h3>", f"<pre>{escape(auto_folding.read_text())}</pre>"]
    return out


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def render_build(build: Path, report_dir: Path, title: str, sim: dict | None = None, synth: dict | None = None,
                 intro: list[str] | None = None) -> str:
    build = Path(build)
    rep = build / "report"
    est = _read_json(rep / "estimates.json")
    sim = sim if sim is not None else _read_json(rep / "rtlsim.json")
    synth = synth if synth is not None else _read_json(rep / "synth_summary.json")
    timing = vivado_timing(build / "vivado" / "output" / "timing_summary.rpt")
    body = [f"<h1>{escape(title)}</h1>"] + (intro or [])
    tp = throughput(est["cycles_per_frame_ideal"], build, est["fclk_mhz"]) if est else None
    body += _layers_section(est, tp)
    body += _rtlsim_section(sim)
    body += _synth_section(synth, timing, _read_json(rep / "timing.json") if tp and tp["measured"] else None)
    body += _steps_section(_read_json(build / "build_summary.json"), rep / "auto_folding.md")
    body += _files_section(build, report_dir)
    body.append('<p class="muted">Written by bnnforge.</p>')
    return _page(title, body)


def write_build_report(build_dir) -> Path:
    """BUILD/report/index.html from what the build wrote."""
    build = Path(build_dir)
    report_dir = build / "report"
    report_dir.mkdir(exist_ok=True)
    manifest = _read_json(build / "rtl" / "manifest.json") or {}
    top = manifest.get("top")
    title = f"bnnforge build: {top}" if top else f"bnnforge build: {build.name}"
    path = report_dir / "index.html"
    path.write_text(render_build(build, report_dir, title))
    return path


def write_demo_report(out_dir, report: dict) -> Path:
    """OUT/report/index.html of `bnnforge demo`: its three-level summary and training
    curve, then the build's layers, simulation, synthesis and files."""
    out = Path(out_dir)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    sim = {"frames": report.get("test_images"), "rtl_mismatches": report.get("rtl_mismatches", 0),
           **{k: report.get(k) for k in ("accuracy_torch", "accuracy_golden", "accuracy_rtl",
                                         "cycles_per_frame_measured", "cycles_per_frame_ideal",
                                         "latency_cycles_first_frame", "rtlsim_seconds")}}
    synth = None
    if report.get("luts") is not None:
        synth = {"luts": report["luts"], "ffs": report.get("ffs"), "bram18": report.get("bram18"),
                 "dsp": report.get("dsp"), "seconds": report.get("synth_seconds")}
    agree = report.get("golden_vs_torch_agreement")
    intro = [f"<p>The whole job on the bundled 8x8 digits: trained ({_num(report.get('train_seconds'))} s), exported "
             f"to QONNX, built to Verilog ({_num(report.get('build_seconds'))} s), the RTL simulated on "
             f"{_num(report.get('test_images'))} test images and compared with the golden model and torch.</p>"]
    if agree is not None:
        intro.append(f"<p>Golden model = torch on {agree:.2%} of the images; RTL outputs differing from the golden "
                     f"model: {_verdict(int(report.get('rtl_mismatches', 0)))}.</p>")
    curve = report_dir / "training_curve.png"
    if curve.is_file():
        intro += ["<h2>Training</h2>", _png(curve, "training curve")]
    title = f"bnnforge demo: {report.get('topology', '')} ({report.get('activation', '')} activations)"
    path = report_dir / "index.html"
    path.write_text(render_build(out / "build", report_dir, title, sim=sim, synth=synth, intro=intro))
    return path
