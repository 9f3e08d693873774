"""xc7 logic delay (Yosys sta, cells only) and Yosys LUT/FF of the k-bit and block-sparse
matrix units at the shapes the zoo and the methods build, without pipelining
(PIPE_EVERY 0) and at the pipelining the compiler chooses for a target clock.

    .venv/bin/python benchmarks/unit_timing.py [--clk-period-ns 5] [--units tfc_2w2a_0,bd_0] [--luts]

Each unit gets random weights of its kind (written with the compiler's own image
writers) and all-zero thresholds; the logic delay does not depend on the values. The
shapes are those of the zoo's W2A2 builds (benchmarks/zoo.py, BNN-PYNQ foldings) and of
benchmarks/methods.py's MLP (binary-domain sparse and grouped layers at its folding).
A --clk-period-ns of 5 (200 MHz) leaves 2.5 ns for the cells (hw/stages/mvtu.py
LOGIC_SHARE): the column "fits" says whether the pipelined unit is within it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bnnforge.hw.memfiles import multithreshold_words, threshold_words, write_memh
from bnnforge.hw.memfiles_kbit import kbit_weight_words
from bnnforge.hw.stages.mvtu import LOGIC_SHARE, mvtu_pipe_every
from bnnforge.hw.synth import logic_delay, synthesize
from bnnforge.resources import rtl_dir
from bnnforge.sim.golden_ext import build_sparse_layer

KBIT = ("mvtu_kbit", "popcount", "adder_tree", "pipe_delay")
SPARSE = ("mvtu_sparse", "popcount", "popcount_compressor", "adder_tree", "sign_resize", "pipe_delay")
W2A2 = dict(MODE=2, WEIGHT_BITS=2, INPUT_BITS=2, INPUT_OFFSET=1, OUT_MODE=2, OUT_BITS=2)
# name -> (module, parameters; for mvtu_sparse also the weight kind and input kind)
UNITS = {
    "tfc_2w2a_0": ("mvtu_kbit", dict(W2A2, MW=784, MH=64, PE=16, SIMD=49, INPUT_OFFSET=0, INPUT_SIGNED=1,
                                     ACC_BITS=11)),
    "tfc_2w2a_1": ("mvtu_kbit", dict(W2A2, MW=64, MH=64, PE=8, SIMD=8, ACC_BITS=8)),
    "cnv_2w2a_0": ("mvtu_kbit", dict(W2A2, MW=27, MH=64, PE=16, SIMD=3, INPUT_BITS=8, INPUT_OFFSET=0,
                                     INPUT_SIGNED=1, ACC_BITS=13)),
    "cnv_2w2a_3": ("mvtu_kbit", dict(W2A2, MW=1152, MH=128, PE=16, SIMD=32, ACC_BITS=12, WEIGHT_RAM=1)),
    "cnv_2w2a_7": ("mvtu_kbit", dict(W2A2, MW=512, MH=512, PE=1, SIMD=8, ACC_BITS=11, WEIGHT_RAM=1)),
    "bd_0": ("mvtu_sparse", dict(MW=784, MH=256, PE=16, SIMD=49, ACC_BITS=16), "sparse01", "bipolar"),
    "bd_1": ("mvtu_sparse", dict(MW=256, MH=256, PE=16, SIMD=16, ACC_BITS=16), "sparse01", "bipolar"),
    "sibnn_bd_1": ("mvtu_sparse", dict(MW=256, MH=256, PE=16, SIMD=16, ACC_BITS=16), "sparse01", "unipolar"),
    "ftbnn_grouped_1": ("mvtu_sparse", dict(MW=256, MH=256, PE=16, SIMD=16, ACC_BITS=16), "pm1_blocks",
                        "bipolar"),
    "int2_bd": ("mvtu_sparse", dict(MW=256, MH=64, PE=16, SIMD=16, ACC_BITS=16, INPUT_BITS=2), "sparse01",
                "int"),
}


def _kbit_files(p: dict, d: Path, rng) -> list[Path]:
    wb = p["WEIGHT_BITS"]
    W = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(p["MH"], p["MW"]))
    write_memh(d / "weights.mem", kbit_weight_words(W, p["PE"], p["SIMD"], wb), p["PE"] * p["SIMD"] * wb)
    nt = (1 << p["OUT_BITS"]) - 1 if p["OUT_MODE"] == 2 else 1
    T = np.zeros((p["MH"], nt), dtype=np.int64)
    if p["OUT_MODE"] == 2:
        write_memh(d / "thresholds.mem", multithreshold_words(T, p["PE"], p["ACC_BITS"]),
                   p["PE"] * nt * p["ACC_BITS"])
    else:
        write_memh(d / "thresholds.mem", threshold_words(T[:, 0], p["PE"], p["ACC_BITS"]), p["PE"] * p["ACC_BITS"])
    return [d / "weights.mem", d / "thresholds.mem"]


def _sparse_files(p: dict, wk: str, kind: str, d: Path, rng) -> tuple[dict, list[Path]]:
    mw, mh, pe, simd = p["MW"], p["MH"], p["PE"], p["SIMD"]
    nf, sf = mh // pe, mw // simd
    if wk == "sparse01":   # binary-domain {-1, 7}: 40 % of the blocks stored, 40 % ones inside
        mask = rng.random((nf, sf)) < 0.4
        B = (rng.random((mh, mw)) < 0.4).astype(np.int64) * np.kron(mask, np.ones((pe, simd), dtype=np.int64))
        layer = build_sparse_layer(-1 + 8 * B, pe, simd, wk, m=-1)
    else:                  # four groups on the block diagonal
        g = 4
        mask = np.kron(np.eye(g, dtype=np.int64), np.ones((mh // g, mw // g), dtype=np.int64))
        layer = build_sparse_layer(mask * (2 * rng.integers(0, 2, (mh, mw)) - 1), pe, simd, wk)
    params = layer.write(d, kind, p["ACC_BITS"], thresholds=np.zeros(mh, dtype=np.int64))
    params.update(INPUT_BITS=p.get("INPUT_BITS", 1), OUT_MODE=0)
    return params, [d / v for v in params.values() if isinstance(v, str) and v.endswith(".mem")]


def measure(name: str, clk: float, luts: bool, work: Path) -> dict:
    spec = UNITS[name]
    module, p = spec[0], dict(spec[1])
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if module == "mvtu_kbit":
        files, srcs = _kbit_files(p, d, rng), KBIT
    else:
        p, files = _sparse_files(p, spec[2], spec[3], d, rng)
        srcs = SPARSE
    sources = [rtl_dir() / f"{s}.v" for s in srcs]
    k = mvtu_pipe_every(p["SIMD"], clk, name)
    row = {"unit": name, "module": module, "shape": f"{p['MW']}x{p['MH']} PE {p['PE']} SIMD {p['SIMD']}",
           "pipe_every": k}
    t0 = time.time()
    for tag, pipe in (("flat", 0), ("piped", k)):
        r = logic_delay(sources, module, d / f"sta_{tag}", parameters=dict(p, PIPE_EVERY=pipe), data_files=files)
        row[f"sta_{tag}_ns"] = r["logic_delay_ns"]
        if luts:
            s = synthesize(sources, module, workdir=d / f"synth_{tag}", parameters=dict(p, PIPE_EVERY=pipe),
                           data_files=files).total
            row[f"lut_{tag}"], row[f"ff_{tag}"] = s.lut_total, s.ff
    row["fits"] = row["sta_piped_ns"] <= clk * LOGIC_SHARE
    row["seconds"] = round(time.time() - t0, 1)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clk-period-ns", type=float, default=5.0)
    ap.add_argument("--units", default=",".join(UNITS), help=f"comma list of: {', '.join(UNITS)}")
    ap.add_argument("--luts", action="store_true", help="also Yosys synth_xilinx LUT/FF (slower)")
    args = ap.parse_args(argv)
    names = [u.strip() for u in args.units.split(",") if u.strip()]
    bad = [u for u in names if u not in UNITS]
    if bad:
        print(f"bnnforge: error: --units: unknown unit {bad[0]!r}; known: {', '.join(UNITS)}", file=sys.stderr)
        return 2
    budget = args.clk_period_ns * LOGIC_SHARE
    head = ("| unit | module | shape | sta ns, PIPE_EVERY 0 | PIPE_EVERY at the clock | sta ns | "
            f"<= {budget:g} ns |" + (" LUT (0 -> piped) | FF (0 -> piped) |" if args.luts else "") + " s |")
    print(f"# Matrix units at a {args.clk_period_ns:g} ns clock ({budget:g} ns of xc7 cells)\n")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    with tempfile.TemporaryDirectory(prefix="unit_timing_") as tmp:
        for name in names:
            r = measure(name, args.clk_period_ns, args.luts, Path(tmp))
            extra = (f" {r['lut_flat']:,} -> {r['lut_piped']:,} | {r['ff_flat']:,} -> {r['ff_piped']:,} |"
                     if args.luts else "")
            print(f"| {name} | {r['module']} | {r['shape']} | {r['sta_flat_ns']} | {r['pipe_every']} | "
                  f"{r['sta_piped_ns']} | {'yes' if r['fits'] else 'NO'} |{extra} {r['seconds']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
