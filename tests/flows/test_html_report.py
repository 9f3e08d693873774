"""The HTML build report (report/index.html) opened in headless Chromium: a
screenshot that is not blank, the layer rows in the rendered DOM, no console
message (the page has no script; a script error, a failed load or a blocked
request would be logged), every relative link resolving to a file of the build.
The checks themselves are shown to fail on a page with a script error and on a
blank page. Skips only where Chromium is not installed (`make install` installs
Debian's `chromium` as root)."""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from tests.deploy.conftest import FOLD, STEPS, _build

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# Chromium logs page console output (console.*, uncaught exceptions, failed loads) as
# "...:INFO:CONSOLE:<line>] ..." (older: "INFO:CONSOLE(<line>)] ...")
CONSOLE = re.compile(r":CONSOLE[:(]")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium is not installed (make install installs Debian's chromium as root)")
    return exe


def render(page: Path, tmp: Path, size=(1200, 1600)) -> dict:
    """Screenshot and DOM of `page` in headless Chromium, with its console lines."""
    exe = _chromium()
    shot = tmp / f"{page.stem}.png"
    base = [exe, *FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}"]
    p1 = subprocess.run(base + [f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()],
                        capture_output=True, text=True, timeout=180)
    p2 = subprocess.run(base + ["--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert p1.returncode == 0 and shot.is_file(), p1.stderr[-2000:]
    assert p2.returncode == 0, p2.stderr[-2000:]
    console = [l for l in (p1.stderr + p2.stderr).splitlines() if CONSOLE.search(l)]
    return {"png": shot, "dom": p2.stdout, "console": console}


def pixel_std(png: Path) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(png).convert("L"), dtype=np.float64).std())


class TableRows(HTMLParser):
    """Cell texts of every <tr> of the tables with the given ids, and srcs/hrefs."""

    def __init__(self):
        super().__init__()
        self.tables, self.srcs, self.hrefs = {}, [], []
        self._table, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = {"class": a.get("class") or "", "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if a.get("src"):
            self.srcs.append(a["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None



def parse(dom: str) -> TableRows:
    d = TableRows()
    d.feed(dom)
    # the build report's layer rows: the cells of every tr.layer
    d.rows = [r["cells"] for rows in d.tables.values() for r in rows if "layer" in r["class"].split()]
    return d


def check_page(page: Path, tmp: Path, layer_names: list[str]) -> dict:
    r = render(page, tmp)
    assert r["console"] == [], r["console"]
    assert pixel_std(r["png"]) > 10, "screenshot is blank"
    d = parse(r["dom"])
    assert [row[0] for row in d.rows] == layer_names
    assert all(s.startswith("data:") for s in d.srcs), d.srcs          # self-contained
    for h in d.hrefs:                                                      # relative, and each exists
        assert not re.match(r"^[a-z]+:", h), h
        assert (page.parent / unquote(h)).is_file(), h
    return {**r, "parsed": d}


TIMING_RPT = (
    "------------------------------------------------------------------------------------------------\n"
    "| Design Timing Summary\n| ---------------------\n"
    "------------------------------------------------------------------------------------------------\n\n"
    "    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  "
    "THS Failing Endpoints  THS Total Endpoints\n"
    "    -------      -------  ---------------------  -------------------      -------      -------  "
    "---------------------  -------------------\n"
    "      1.234        0.000                      0                12345        0.052        0.000  "
    "                    0                12345\n\n\n"
    "All user specified timing constraints are met.\n")


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("html"))


def test_build_report_renders(digits_build, tmp_path):
    page = digits_build / "report" / "index.html"
    est = json.loads((digits_build / "report" / "estimates.json").read_text())
    r = check_page(page, tmp_path, [l["name"] for l in est["layers"]])
    d = r["parsed"]
    for row, l in zip(d.rows, est["layers"]):
        assert row[1] == l["kind"] and row[6] == f"{l['cycles']:,}" and row[8] == f"{l['est_luts']:,}"
    links = {Path(unquote(h)).name for h in d.hrefs}
    models = {p.name for p in (digits_build / "intermediate_models").glob("*.onnx")}
    verilog = set(json.loads((digits_build / "rtl" / "manifest.json").read_text())["files"])
    assert models and models | verilog | {"final_model.onnx"} <= links
    assert r["dom"].count("<svg") == 3   # cycles, LUT, BRAM charts


def test_model_strings_are_escaped(digits_build, tmp_path):
    from bnnforge.finn_flows.report_html import write_build_report

    b = tmp_path / "build"
    shutil.copytree(digits_build, b)
    est_path = b / "report" / "estimates.json"
    est = json.loads(est_path.read_text())
    evil = '<script>console.error("injected")</script><img src=x onerror=alert(1)>'
    est["layers"][0]["name"] = evil
    est["bottleneck"] = [evil]
    est_path.write_text(json.dumps(est))
    (b / "vivado" / "output").mkdir(parents=True)
    (b / "vivado" / "output" / "timing_summary.rpt").write_text(TIMING_RPT)
    page = write_build_report(b)
    assert "<script" not in page.read_text()
    r = check_page(page, tmp_path, [evil] + [l["name"] for l in est["layers"][1:]])
    text = re.sub(r"<[^>]+>", " ", r["dom"])
    assert re.search(r"WNS\(ns\)\s+1\.234", text) and "../vivado/output/timing_summary.rpt" in r["parsed"].hrefs


def test_the_checks_can_fail(tmp_path):
    bad = tmp_path / "script_error.html"
    bad.write_text("<!DOCTYPE html><html><body><h1>report</h1><table><tr class='layer'><td>MVTU_0</td></tr>"
                   "</table><script>undefinedFunction();</script></body></html>")
    r = render(bad, tmp_path)
    assert any("undefinedFunction" in l for l in r["console"]), r["console"]
    with pytest.raises(AssertionError):
        check_page(bad, tmp_path, ["MVTU_0"])
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body><table><tr class='layer'><td></td></tr></table></body></html>")
    assert pixel_std(render(blank, tmp_path)["png"]) < 1
    with pytest.raises(AssertionError, match="blank"):
        check_page(blank, tmp_path, [""])


@pytest.mark.slow
@pytest.mark.rtl
def test_report_with_rtlsim_and_synthesis(tmp_path):
    """A build with the rtlsim and synth steps: their sections show the figures of
    report/rtlsim.json and report/synth_summary.json."""
    from tests.flows.helpers import export_and_build, random_model

    _, _, b = export_and_build(random_model("digits_mlp", "unipolar", seed=31), tmp_path,
                               steps=STEPS + ["rtlsim", "synth"], rtlsim_count=20, name="digits_mlp",
                               folding_config_file=str(FOLD / "digits_mlp.json"))
    est = json.loads((b / "report" / "estimates.json").read_text())
    r = check_page(b / "report" / "index.html", tmp_path, [l["name"] for l in est["layers"]])
    sim = json.loads((b / "report" / "rtlsim.json").read_text())
    syn = json.loads((b / "report" / "synth_summary.json").read_text())
    text = re.sub(r"<[^>]+>", " ", r["dom"])
    assert re.search(r"frames\s+20\b", text) and re.search(r"outputs differing from the golden model\s+0\b", text)
    assert f"{sim['cycles_per_frame_measured']:,.1f}" in text
    assert re.search(rf"LUT\s+{syn['luts']:,}\b", text)
    # the synth step measured the xc7 logic delay: frames/s is quoted at that clock, named
    fmax = json.loads((b / "report" / "timing.json").read_text())["sta"]["fmax_mhz"]
    assert re.search(rf"up to [\d,]+ frames/s at {fmax:g} MHz, the xc7 logic-delay limit \(Yosys sta, no routing", text)
    assert "assumed" not in (b / "report" / "estimates.md").read_text()


@pytest.mark.slow
@pytest.mark.rtl
def test_demo_report_renders(tmp_path):
    """`bnnforge demo`'s report/index.html: the three levels, the training curve
    (inline PNG), the layers of its build and links into OUT/build."""
    from bnnforge.pipeline import run_demo

    rdir = run_demo(tmp_path / "demo", epochs=1, quiet=True, synth=False)
    rep = json.loads((rdir / "report.json").read_text())
    est = json.loads((tmp_path / "demo" / "build" / "report" / "estimates.json").read_text())
    r = check_page(rdir / "index.html", tmp_path, [l["name"] for l in est["layers"]])
    text = re.sub(r"<[^>]+>", " ", r["dom"])
    assert re.search(rf"accuracy \(RTL\)\s+{rep['accuracy_rtl']:.4f}", text)
    # without synthesis nothing measured the clock: said so, in the report and the summary
    assert rep["clock_measured"] is False and rep["throughput"] == "1,562,500 frames/s at an assumed 100 MHz (not measured)"
    assert rep["throughput"] in text and rep["throughput"] in (rdir / "report.md").read_text()
    assert any(s.startswith("data:image/png;base64,") for s in r["parsed"].srcs)
    assert any(h.startswith("../build/rtl/") for h in r["parsed"].hrefs)


def test_vivado_timing_summary_is_read(tmp_path):
    from bnnforge.finn_flows.report_html import vivado_timing

    rpt = tmp_path / "timing_summary.rpt"
    rpt.write_text(TIMING_RPT)
    t = vivado_timing(rpt)
    assert t == {"WNS(ns)": "1.234", "TNS(ns)": "0.000", "WHS(ns)": "0.052", "THS(ns)": "0.000", "constraints": "met"}
    assert vivado_timing(tmp_path / "missing.rpt") is None
