"""A sweep's HTML page (OUT/results.html) opened in headless Chromium, like the build
report (tests/flows/test_html_report.py): not blank, no console message, the table
rows equal to results.json, the Pareto plot inline, failed candidates with their
error (escaped), relative links that resolve."""
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from bnnforge import sweep as sweep_mod
from bnnforge.errors import BnnforgeError
from tests.flows.helpers import random_model
from tests.flows.test_html_report import TableRows, pixel_std, render

EVIL = '<script>console.error("injected")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory, request):
    """A serial sweep of three candidates, one of which fails with an error that holds
    markup."""
    import bnnforge

    tmp = tmp_path_factory.mktemp("sweep_html")
    model = bnnforge.export(random_model("digits_mlp", "unipolar"), tmp / "model.onnx")
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setattr(sweep_mod, "ray_available", lambda: False)
    real = sweep_mod._run_stages

    def failing_at_128(job, work):
        if job["candidate"].get("target_cycles") == 128:
            raise BnnforgeError(f"codegen: {EVIL}")
        return real(job, work)

    mp.setattr(sweep_mod, "_run_stages", failing_at_128)
    path = tmp / "sweep.yaml"
    path.write_text(f"model: {{onnx: {model}}}\nspace: {{target_cycles: [32, 128, 512]}}\n"
                    "stages: {accuracy: {images: 40}}\n")
    r = sweep_mod.run_sweep(path, tmp / "out", progress=False, say=lambda m: None)
    return {"out": tmp / "out", "result": r}


def test_sweep_page_renders_every_candidate(sweep_out, tmp_path):
    out = sweep_out["out"]
    page = out / "results.html"
    assert sweep_out["result"]["table"]["html"] == str(page)
    assert "<script" not in page.read_text()
    rows = json.loads((out / "results.json").read_text())
    r = render(page, tmp_path, size=(1400, 1800))
    assert r["console"] == [], r["console"]
    assert pixel_std(r["png"]) > 10, "screenshot is blank"
    d = TableRows()
    d.feed(r["dom"])
    body = [row for row in d.tables["candidates"] if "candidate" in row["class"].split()]
    heads = d.tables["candidates"][0]["cells"]
    assert [row["cells"][0] for row in body] == [row["key"] for row in rows]
    col = {h: i for i, h in enumerate(heads)}
    for tr, row in zip(body, rows):
        cells = tr["cells"]
        assert cells[col["status"]] == row["status"] and cells[col["target cycles"]] == str(row["target_cycles"])
        if row["status"] == "ok":
            assert cells[col["est. LUT"]] == f"{row['est_luts']:,}"
            assert cells[col["cycles / frame (ideal)"]] == f"{row['cycles_per_frame_ideal']:,}"
            assert cells[col["frames/s"]] == f"{row['fps']:,.0f}"
            assert cells[col["accuracy (golden)"]] == f"{row['accuracy_golden']:.4f}"
        else:
            assert cells[col["est. LUT"]] == ""
    # the two that finished: the faster one costs more LUT, so both are on the front
    ok = [(tr, row) for tr, row in zip(body, rows) if row["status"] == "ok"]
    assert len(ok) == 2 and all(tr["cells"][-1] == "yes" and "front" in tr["class"] for tr, _ in ok)
    failed = [row for row in d.tables["failed"] if row["class"] == "failed"]
    assert [f["cells"][0] for f in failed] == [row["key"] for row in rows if row["status"] == "failed"]
    assert failed[0]["cells"][2] == f"codegen: {EVIL}" == rows[1]["error"]
    assert "target_cycles 128" in failed[0]["cells"][1]
    assert len(d.srcs) == 1 and d.srcs[0].startswith("data:image/png;base64,")   # the plot, inline
    assert {unquote(h) for h in d.hrefs} == {"results.csv", "results.json", "pareto.png"}
    assert all((out / unquote(h)).is_file() for h in d.hrefs)
    text = re.sub(r"<[^>]+>", " ", r["dom"])
    assert re.search(r"3 candidates \(2 ok, 1 failed\)", text)


def test_page_without_a_finished_candidate(tmp_path):
    spec = sweep_mod.SweepSpec(tmp_path / "s.yaml", {"onnx": "m.onnx"}, [{"target_cycles": 8}],
                               {"build": True}, 100.0)
    rows = [{"key": "abc", "status": "failed", "error": "build: x", "target_cycles": 8}]
    sweep_mod.write_table(rows, tmp_path)
    page = Path(sweep_mod.write_html(rows, tmp_path, spec, None))
    text = page.read_text()
    assert "No candidate finished" in text and "build: x" in text and "<img" not in text
