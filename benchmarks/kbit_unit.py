"""The k-bit weight unit (hw/rtl/mvtu_kbit.v) in Yosys: LUTs of its two chunk
architectures (ARCH 0 lane products, ARCH 1 bit planes) over weight bits, input kinds
and foldings, beside the compiler's estimate (finn_flows/operators/mvtu_kbit.py, lane
products). Lone instances with random weights/thresholds, synth_xilinx (xc7), weights as
LUT ROM; DSP48s counted (the lanes are written so that none is inferred). Prints and writes benchmarks/results/kbit_unit.md and .json.

    .venv/bin/python benchmarks/kbit_unit.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bnnforge.finn_flows.operators.mvtu_kbit import mvtu_kbit_estimate
from bnnforge.hw.memfiles import multithreshold_words, threshold_words, write_memh
from bnnforge.hw.memfiles_kbit import kbit_weight_words
from bnnforge.hw.synth import synthesize
from bnnforge.sim.verilator_env import rtl_sources

OUT = Path(__file__).resolve().parent / "results"
KINDS = {"bipolar": (0, 1, 0), "w2a2 (2-bit levels, offset 2)": (2, 2, 2), "int4": (2, 4, 0)}
MODE_NAMES = {0: "xnor", 1: "and", 2: "addsub"}
# (MW, MH, PE, SIMD, input kind, WEIGHT_BITS, OUT_MODE, OUT_BITS)
GRID = [
    (64, 16, 4, 16, "bipolar", 2, 0, 1),
    (64, 16, 4, 16, "w2a2 (2-bit levels, offset 2)", 2, 2, 2),
    (64, 16, 4, 16, "int4", 2, 0, 1),
    (64, 16, 4, 16, "w2a2 (2-bit levels, offset 2)", 3, 2, 2),
    (64, 16, 4, 16, "w2a2 (2-bit levels, offset 2)", 4, 2, 2),
    (64, 16, 4, 16, "int4", 4, 0, 1),
    (64, 32, 8, 8, "w2a2 (2-bit levels, offset 2)", 2, 2, 2),
    (128, 16, 2, 64, "w2a2 (2-bit levels, offset 2)", 2, 2, 2),
    (64, 16, 16, 4, "bipolar", 2, 0, 1),
]
QUICK = GRID[:2]


def synth_unit(cfg, arch: int, tmp: Path) -> dict:
    mw, mh, pe, simd, kind, wb, out_mode, ob = cfg
    mode, ib, offset = KINDS[kind]
    rng = np.random.default_rng(1)
    W = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(mh, mw))
    maxabs = 1 if mode != 2 else max(offset, (1 << ib) - 1 - offset)
    r = int(np.abs(W).sum(axis=1).max()) * maxabs
    acc = (r + 1).bit_length() + 1
    d = tmp / f"a{arch}_{mw}x{mh}_p{pe}s{simd}_m{mode}i{ib}w{wb}o{out_mode}"
    d.mkdir(parents=True)
    write_memh(d / "w.mem", kbit_weight_words(W, pe, simd, wb), pe * simd * wb)
    nt = (1 << ob) - 1 if out_mode == 2 else 1
    T = np.sort(rng.integers(-r, r + 1, size=(mh, nt)), axis=1)
    if out_mode == 2:
        write_memh(d / "t.mem", multithreshold_words(T, pe, acc), pe * nt * acc)
    else:
        write_memh(d / "t.mem", threshold_words(T[:, 0], pe, acc), pe * acc)
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=mode, WEIGHT_BITS=wb, ARCH=arch, INPUT_BITS=ib,
                  INPUT_OFFSET=offset, ACC_BITS=acc, OUT_MODE=out_mode, OUT_BITS=ob)
    ow = pe * (ob if out_mode == 2 else 1)
    plist = ", ".join(f".{k}({v})" for k, v in params.items())
    # a wrapper sets the memory file names at elaboration ($readmemh runs before chparam)
    (d / "wrap.v").write_text(f"""
module wrap (input clk, input rst_n, input [{simd * ib - 1}:0] in_data, input in_valid, output in_ready,
             output [{ow - 1}:0] out_data, output out_valid, input out_ready);
  mvtu_kbit #({plist}, .WEIGHT_FILE("w.mem"), .THRESH_FILE("t.mem")) u (
    .clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid), .in_ready(in_ready),
    .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    res = synthesize(rtl_sources("popcount", "adder_tree", "pipe_delay", "mvtu_kbit") + [d / "wrap.v"], "wrap", workdir=d)
    a = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, acc_bits=acc, weight_bits=wb, mode=MODE_NAMES[mode],
             input_bits=ib, out_mode={0: "threshold", 2: "multithreshold"}[out_mode], out_bits=ob)
    return {"MW x MH": f"{mw} x {mh}", "PE x SIMD": f"{pe} x {simd}", "input": kind, "weight_bits": wb,
            "out": "1-bit" if out_mode == 0 else f"{ob}-bit", "arch": "bit planes" if arch else "lane products",
            "yosys_lut": res.total.lut_total, "dsp": res.total.dsp, "est_lut": mvtu_kbit_estimate("u", a)["est_luts"] if arch == 0 else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two configurations only")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-kbit-"))
    rows = []
    for cfg in (QUICK if a.quick else GRID):
        for arch in (0, 1):
            rows.append(synth_unit(cfg, arch, tmp))
            print(json.dumps(rows[-1]), flush=True)
    head = ["MW x MH", "PE x SIMD", "input", "weight_bits", "out", "arch", "yosys_lut", "dsp", "est_lut"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join("" if r[h] is None else str(r[h]) for h in head) + " |")
    text = ("Command: `.venv/bin/python benchmarks/kbit_unit.py" + (" --quick" if a.quick else "") + "`\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    if not a.quick:
        OUT.mkdir(exist_ok=True)
        (OUT / "kbit_unit.md").write_text(text)
        (OUT / "kbit_unit.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
