"""Brevitas' BNN-PYNQ zoo through bnnforge: each model x exporter, random init with random
BatchNorm statistics. Prints and writes (benchmarks/results/zoo.md, .json) per model:
build status (or the one-line refusal), golden argmax == qonnx's execution of the
exported file, RTL mismatches (bulk Verilator harness, random stalls), measured vs ideal
cycles per frame, build seconds, and with --synth the Yosys LUT/BRAM18 of the design.
With --finn-src PATH (a FINN source checkout), FINN's own LUT/BRAM18 estimates of the
same matrix-vector layers at the same folding beside bnnforge's (benchmarks/finn_estimates.py);
--no-rtl skips the simulations (estimates and golden == qonnx only).

Runs merge into the saved table: a row (model x exporter) keeps the columns an earlier run
measured and takes the new run's figures, so one design can be synthesized at a time.
Runs with the RTL simulations go to zoo.md/.json, --no-rtl runs (FINN's estimates, Yosys)
to zoo_finn.md/.json; each table lists the commands that filled it.

    .venv/bin/python benchmarks/zoo.py [--synth] [--models tfc_1w1a,lfc_1w2a] [--finn-src PATH] [--no-rtl]
    .venv/bin/python benchmarks/zoo.py --synth --no-rtl --exporters dynamo --models cnv_1w1a
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

import bnnforge
from bnnforge.errors import BnnforgeError
from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from bnnforge.zoo import EXPORTERS, ZOO, folding_for, input_shape, qonnx_outputs, zoo_export

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finn_estimates import finn_estimates, import_finn_mvau  # noqa: E402

STEPS = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"]
OUT = Path(__file__).resolve().parent / "results"


def run(name, exporter, tmp: Path, synth: bool, rtl: bool = True, finn_mvau=None) -> dict:
    row = {"model": name, "exporter": exporter}
    path = tmp / f"{name}_{exporter}.onnx"
    zoo_export(name, exporter, path)
    cnv = name.startswith("cnv")
    n_golden, n_rtl = (40, 10) if cnv else (200, 50)
    b = tmp / f"build_{name}_{exporter}"
    t0 = time.perf_counter()
    try:
        bnnforge.build(path, b, folding=folding_for(name), steps=STEPS)
    except BnnforgeError as e:
        row["status"] = f"refused: {str(e).splitlines()[0]}"
        return row
    row["status"] = "built"
    row["build_s"] = round(time.perf_counter() - t0, 2)
    streamlined = onnx.load(str(b / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(b / "final_model.onnx"))
    x = np.random.default_rng(3).random((n_golden,) + input_shape(name)[1:], dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q).reshape(-1)
    ref = qonnx_outputs(path, x).argmax(1)
    row["golden_eq_qonnx"] = f"{int(np.sum(golden == ref))}/{n_golden}"
    if rtl:
        res = run_network_bulk(b / "rtl", q[:n_rtl], golden[:n_rtl], p_gap=0.2, p_stall=0.2, seed=1)
        clean = run_network_bulk(b / "rtl", q[:n_rtl], golden[:n_rtl])
        row["rtl"] = f"{res['rtl_mismatches'] + clean['rtl_mismatches']} of {2 * n_rtl}"
        row["cycles"] = f"{clean['cycles_per_frame_measured']:.1f} ({clean['cycles_per_frame_ideal']})"
    est = json.loads((b / "report" / "estimates.json").read_text())
    row["est_lut"], row["est_bram18"] = est["est_luts_total"], est["est_bram18_total"]
    if finn_mvau is not None:
        f = finn_estimates(hw, est["layers"], finn_mvau)
        row.update(our_mv_lut=f["our_mv_lut"], finn_lut=f["finn_lut"], finn_bram18=f["finn_bram18"])
    if synth:
        r = bnnforge.synthesize(b)["total"]
        row["yosys_lut"], row["yosys_ff"], row["bram18"] = r["lut_total"], r["ff"], r["bram18"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", action="store_true", help="Yosys synth_xilinx of every built design (minutes)")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--exporters", default=",".join(EXPORTERS))
    ap.add_argument("--finn-src", default=None, help="FINN source checkout: print FINN's MVAU estimates beside ours")
    ap.add_argument("--no-rtl", action="store_true", help="skip the RTL simulations")
    a = ap.parse_args(argv)
    try:
        finn_mvau = import_finn_mvau(a.finn_src) if a.finn_src else None
    except BnnforgeError as e:
        raise SystemExit(f"bnnforge: error: {e}") from None
    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-zoo-"))
    rows = []
    cases = [(m, e) for m in a.models.split(",") for e in a.exporters.split(",")]
    for m, e in tqdm(cases, desc="zoo", unit="model"):
        rows.append(run(m, e, tmp, a.synth, rtl=not a.no_rtl, finn_mvau=finn_mvau))
        tqdm.write(json.dumps(rows[-1]))
    stem = "zoo_finn" if a.no_rtl else "zoo"   # the estimates/synthesis table does not overwrite the RTL one
    args = list(argv if argv is not None else sys.argv[1:])
    # the table names no machine's path: FINN's checkout is FINN_SRC
    cmd = " ".join(["benchmarks/zoo.py"] + ["FINN_SRC" if a.finn_src and x == a.finn_src else
                                            x.replace(a.finn_src, "FINN_SRC") if a.finn_src else x for x in args])
    commands, rows = merge_saved(OUT / f"{stem}.json", rows)
    if cmd not in commands:
        commands.append(cmd)
    table = render(rows)
    print(table)
    OUT.mkdir(exist_ok=True)
    head = "\n".join(f"Command: `.venv/bin/python {c}`" for c in commands) + (
        "\n(FINN_SRC: a FINN source checkout, see docs/benchmarks.md)" if any("FINN_SRC" in c for c in commands) else "")
    (OUT / f"{stem}.md").write_text(head + "\n\n" + table + "\n")
    (OUT / f"{stem}.json").write_text(json.dumps({"commands": commands, "rows": rows}, indent=1))


COLUMNS = [("model", "model"), ("exporter", "exporter"), ("status", "build"), ("golden_eq_qonnx", "golden == qonnx"),
           ("rtl", "RTL mismatches (with/without stalls)"), ("cycles", "cycles/frame measured (ideal)"),
           ("build_s", "build s"), ("est_lut", "bnnforge est. LUT"), ("est_bram18", "bnnforge est. BRAM18"),
           ("yosys_lut", "Yosys LUT"), ("yosys_ff", "Yosys FF"), ("bram18", "Yosys BRAM18"),
           ("our_mv_lut", "bnnforge est. LUT (matrix layers)"), ("finn_lut", "FINN est. LUT (MVAU)"),
           ("finn_bram18", "FINN est. BRAM18")]


def merge_saved(path: Path, new_rows: list[dict]) -> tuple[list[str], list[dict]]:
    """The saved table's commands and rows with ``new_rows`` merged in by (model, exporter):
    a new figure replaces the saved one, columns the new run did not measure stay."""
    saved = json.loads(path.read_text()) if path.is_file() else {"commands": [], "rows": []}
    if isinstance(saved, list):   # tables written before the merge kept no commands
        saved = {"commands": [], "rows": saved}
    merged = {(r["model"], r["exporter"]): dict(r) for r in saved["rows"]}
    for r in new_rows:
        merged.setdefault((r["model"], r["exporter"]), {}).update(r)
    order = {m: i for i, m in enumerate(ZOO)}
    rows = sorted(merged.values(), key=lambda r: (order.get(r["model"], len(order)), r["model"], r["exporter"]))
    return list(saved["commands"]), rows


def render(rows: list[dict]) -> str:
    """Markdown table of the columns any row has, in COLUMNS' order; blank where a run did not measure."""
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows)]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
