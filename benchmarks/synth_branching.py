"""Yosys synth_xilinx (xc7) resources of the branching units: stream_fork,
stream_add, thresholding, global_pool, for a few parameter sets each.

Usage: python benchmarks/synth_branching.py [--workdir DIR] [--only NAME ...]

About 4 minutes of CPU on an idle machine, most of it the k = 8 comparator
baseline (--only stream_fork stream_add thresholding global_pool skips it).

Each row is one run of ``python -m bnnforge.hw.synth`` on the module itself
(top = the module, parameters set with -P); the exact command is printed
under the table. thresholding needs its threshold images: random sorted
thresholds (seed 0) over the input range are written into the row's workdir
first and passed with --data, so its thresholds are block/distributed ROM
contents that Yosys may fold into the comparators (as they would be in a
generated network). It is synthesized inside a one-instance wrapper that sets
its parameters: a top-level -P override would first elaborate the module with
its default image prefix, whose files do not exist.

For comparison, ``parallel_thresholds`` rows synthesize the design the
binary search replaces, generated here: every beat reads all 2^k - 1
thresholds of its channel at once and counts the comparisons met (one
register stage for the threshold read, then the output register), with the
same thresholds.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bnnforge.hw.memfiles import write_memh
from bnnforge.hw.memfiles_thresholding import write_thresholding_images
from bnnforge.hw.synth import synthesize
from bnnforge.resources import rtl_dir

ROWS = [
    ("stream_fork", {"WIDTH": 64, "N": 2}),
    ("stream_fork", {"WIDTH": 16, "N": 3}),
    ("stream_add", {"LANES": 8, "IN_BITS": 4, "SIGNED": 1}),
    ("stream_add", {"LANES": 32, "IN_BITS": 2, "SIGNED": 0}),
    ("thresholding", {"LANES": 4, "C": 64, "IN_BITS": 8, "SIGNED": 1, "OUT_BITS": 1, "T_BITS": 9}),
    ("thresholding", {"LANES": 4, "C": 64, "IN_BITS": 8, "SIGNED": 1, "OUT_BITS": 2, "T_BITS": 9}),
    ("thresholding", {"LANES": 4, "C": 64, "IN_BITS": 12, "SIGNED": 1, "OUT_BITS": 4, "T_BITS": 13}),
    ("thresholding", {"LANES": 2, "C": 16, "IN_BITS": 16, "SIGNED": 1, "OUT_BITS": 8, "T_BITS": 17}),
    ("parallel_thresholds", {"LANES": 4, "C": 64, "IN_BITS": 8, "SIGNED": 1, "OUT_BITS": 2, "T_BITS": 9}),
    ("parallel_thresholds", {"LANES": 4, "C": 64, "IN_BITS": 12, "SIGNED": 1, "OUT_BITS": 4, "T_BITS": 13}),
    ("parallel_thresholds", {"LANES": 2, "C": 16, "IN_BITS": 16, "SIGNED": 1, "OUT_BITS": 8, "T_BITS": 17}),
    ("global_pool", {"PIXELS": 49, "C": 64, "PE": 16, "IN_BITS": 1, "SIGNED": 0}),
    ("global_pool", {"PIXELS": 64, "C": 128, "PE": 8, "IN_BITS": 4, "SIGNED": 0}),
]


def thresholds(params: dict) -> np.ndarray:
    rng = np.random.default_rng(0)
    b, k = params["IN_BITS"], params["OUT_BITS"]
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if params["SIGNED"] else (0, (1 << b) - 1)
    return np.sort(rng.integers(lo, hi + 1, size=(params["C"], (1 << k) - 1)), axis=1)


def wrapper(path: Path, top: str, params: dict) -> Path:
    """A module of the same ports that instantiates *top* with *params*."""
    lanes, k, ib = params["LANES"], params["OUT_BITS"], params["IN_BITS"]
    plist = ", ".join(f'.{n}("{v}")' if isinstance(v, str) else f".{n}({v})" for n, v in params.items())
    path.write_text(f"""module wrap_{top} (input clk, input rst_n,
    input [{lanes * ib - 1}:0] in_data, input in_valid, output in_ready,
    output [{lanes * k - 1}:0] out_data, output out_valid, input out_ready);
  {top} #({plist}) u (.clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid),
    .in_ready(in_ready), .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    return path


def parallel_thresholds(work: Path, params: dict) -> tuple[Path, list[Path]]:
    """The comparator-per-threshold baseline (Verilog-2005) and its images:
    per lane, CF words of all NT thresholds (threshold t at bits t*T_BITS)."""
    lanes, c, ib, k, tb = (params[n] for n in ("LANES", "C", "IN_BITS", "OUT_BITS", "T_BITS"))
    nt, cf = (1 << k) - 1, c // lanes
    cfw = max(1, (cf - 1).bit_length())
    cw = max(ib, tb) + 1
    T = thresholds(params)
    images = []
    for j in range(lanes):
        words = [sum((int(v) & ((1 << tb) - 1)) << (t * tb) for t, v in enumerate(T[f * lanes + j]))
                 for f in range(cf)]
        images.append(write_memh(work / "images" / f"par_l{j}.mem", words, nt * tb))
    sx = "x[{}]".format(ib - 1) if params["SIGNED"] else "1'b0"
    lanes_v = "\n".join(f"""  reg [{nt * tb - 1}:0] mem{j} [0:{cf - 1}];
  initial $readmemh("par_l{j}.mem", mem{j});
  reg [{nt * tb - 1}:0] t{j};
  reg [{ib - 1}:0] x{j};
  always @(posedge clk) if (en) begin t{j} <= mem{j}[{'cf' if cf > 1 else '0'}]; x{j} <= in_data[{j * ib} +: {ib}]; end
  always @* begin
    cnt{j} = 0;
    for (i = 0; i < {nt}; i = i + 1)
      cnt{j} = cnt{j} + ($signed({{{{{cw - ib}{{{sx.replace('x[', f'x{j}[')}}}}}, x{j}}}) >=
                         $signed({{{{{cw - tb}{{t{j}[i*{tb}+{tb - 1}]}}}}, t{j}[i*{tb} +: {tb}]}}));
  end
  always @(posedge clk) if (en) od[{j * k} +: {k}] <= cnt{j};""" for j in range(lanes))
    cnts = ", ".join(f"cnt{j}" for j in range(lanes))
    v = work / "parallel_thresholds.v"
    v.write_text(f"""module parallel_thresholds (input clk, input rst_n,
    input [{lanes * ib - 1}:0] in_data, input in_valid, output in_ready,
    output [{lanes * k - 1}:0] out_data, output out_valid, input out_ready);
  reg v0, vo;
  reg [{cfw - 1}:0] cf;
  reg [{lanes * k - 1}:0] od;
  reg [{k - 1}:0] {cnts};
  integer i;
  wire en = !vo || out_ready;
  assign in_ready = en;
  always @(posedge clk)
    if (!rst_n) begin v0 <= 0; vo <= 0; cf <= 0; end
    else if (en) begin
      v0 <= in_valid; vo <= v0;
      if (in_valid) cf <= (cf == {cf - 1}) ? 0 : cf + 1;
    end
{lanes_v}
  assign out_data = od;
  assign out_valid = vo;
endmodule
""")
    return v, images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="module names to run")
    a = ap.parse_args(argv)
    root = a.workdir or Path(tempfile.mkdtemp(prefix="synth_branching_"))
    lines = ["| module | parameters | LUT | of which LUTRAM | FF | BRAM18 | CARRY4 | Yosys s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    commands = []
    for i, (top, params) in enumerate(ROWS):
        if a.only and top not in a.only:
            continue
        work = root / f"{i:02d}_{top}"
        work.mkdir(parents=True, exist_ok=True)
        params = dict(params)
        data = []
        if top == "thresholding":
            params["THRESH_PREFIX"] = "thr"
            (work / "images").mkdir(exist_ok=True)
            data = write_thresholding_images(work / "images", "thr", thresholds(params),
                                             params["LANES"], params["T_BITS"])
        srcs = [rtl_dir() / f"{top}.v"]
        synth_top, top_params = top, params
        if top == "parallel_thresholds":
            (work / "images").mkdir(exist_ok=True)
            src, data = parallel_thresholds(work, params)
            srcs, top_params = [src], {}
        elif data:
            synth_top, top_params = f"wrap_{top}", {}
            srcs.append(wrapper(work / "wrap.v", top, params))
        cmd = ["python", "-m", "bnnforge.hw.synth", *map(str, srcs), "--top", synth_top,
               "--workdir", str(work)]
        cmd += [f"-P{k}={v}" for k, v in top_params.items()]
        cmd += [f"--data={p}" for p in data]
        t0 = time.time()
        res = synthesize(srcs, synth_top, workdir=work, parameters=top_params, data_files=data)
        dt = time.time() - t0
        r = res.total
        ptxt = ", ".join(f"{k}={v}" for k, v in params.items() if k != "THRESH_PREFIX")
        lines.append(f"| `{top}` | {ptxt} | {r.lut_total} | {r.lutram + r.srl} | {r.ff} | {r.bram18} | "
                     f"{r.carry4} | {dt:.0f} |")
        commands.append(" ".join(shlex.quote(c) for c in cmd))
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    print()
    print("the same runs from the command line:")
    for c in commands:
        print("  " + c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
