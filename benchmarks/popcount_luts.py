"""LUTs per input bit of popcount implementations under Yosys synth_xilinx (xc7).

Usage: python benchmarks/popcount_luts.py [--widths 64 256 1024] [--workdir DIR] [--jobs 2]

Variants (each wrapped in input/output registers, synthesized flattened):
  naive     for-loop ``cnt = cnt + in[i]``
  addtree   pairwise adder tree (balanced, widths grow by one bit per level)
  lut63     6-bit groups counted by a 6:3 LUT stage (3 LUT6 per 6 bits), then a
            pairwise adder tree of the 3-bit partial counts
  colcomp   bit-level column compressor tree (Wallace style: 6:3 / 5:3 / 4:3 / 3:2
            counters per weight column until every column holds <= 2 bits), then
            one carry-chain adder.  The counters are written as XOR/AND/OR gates
            (full adders), not '+', so Yosys keeps them as LUT logic.
  rtl_tree  hw/rtl/popcount.v with PIPE_EVERY 2: the '+' tree registered every two
            levels (what the pipelined mvtu used before popcount_compressor)
  rtl_comp  hw/rtl/popcount_compressor.v with PIPE_EVERY 2 (what mvtu uses now)

Finding (Yosys 0.70): naive / addtree / lut63 synthesize to the *same* netlist:
alumacc merges any '+'-only network into one $macc and maccmap builds its own
tree, so how the '+' tree is written does not matter to Yosys (it does to Vivado).

The Verilog is generated here (plain Verilog-2005, one module per variant).
Prints a table of LUTs (logic + LUTRAM + SRL, i.e. Vivado's "Slice LUTs"),
LUT/bit, CARRY4, and the ratio to the naive loop; writes results.json into the
workdir.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bnnforge.hw.synth import synthesize
from bnnforge.resources import rtl_dir


def clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def cw(w: int) -> int:
    """Bits needed to hold a count 0..w."""
    return (w).bit_length()


def wrap(name: str, w: int, body: str) -> str:
    ow = cw(w)
    return f"""module {name} (input clk, input [{w-1}:0] din, output reg [{ow-1}:0] cnt);
  reg [{w-1}:0] x;
  wire [{ow-1}:0] c;
  always @(posedge clk) begin x <= din; cnt <= c; end
{body}
endmodule
"""


def v_naive(w: int) -> str:
    ow = cw(w)
    body = f"""  reg [{ow-1}:0] acc;
  integer i;
  always @* begin
    acc = 0;
    for (i = 0; i < {w}; i = i + 1) acc = acc + x[i];
  end
  assign c = acc;"""
    return wrap("pc_naive", w, body)


def _adder_tree(leaves: list[tuple[str, int, int]], lines: list[str], tag: str) -> str:
    """leaves: (signal, width, max value). Pairwise adder tree; returns root signal."""
    level, k = leaves, 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            (a, _, ma), (b, _, mb) = level[j], level[j + 1]
            m = ma + mb
            n = f"{tag}_l{k}_{j // 2}"
            lines.append(f"  wire [{cw(m)-1}:0] {n} = {a} + {b};")
            nxt.append((n, cw(m), m))
        if len(level) % 2:
            nxt.append(level[-1])
        level, k = nxt, k + 1
    return level[0][0]


def v_addtree(w: int) -> str:
    lines: list[str] = []
    leaves = [(f"{{1'b0, x[{i}]}}", 2, 1) for i in range(w)]
    root = _adder_tree(leaves, lines, "t")
    lines.append(f"  assign c = {root};")
    return wrap("pc_addtree", w, "\n".join(lines))


def v_lut63(w: int) -> str:
    lines: list[str] = []
    leaves = []
    for g, lo in enumerate(range(0, w, 6)):
        bits = [f"x[{i}]" for i in range(lo, min(lo + 6, w))]
        n = f"g{g}"
        lines.append(f"  wire [2:0] {n} = " + " + ".join(f"{{2'b0, {b}}}" for b in bits) + ";")
        leaves.append((n, 3, len(bits)))
    root = _adder_tree(leaves, lines, "t")
    lines.append(f"  assign c = {root};")
    return wrap("pc_lut63", w, "\n".join(lines))


def _counter_gates(n: str, g: list[str]) -> list[str]:
    """Gate-level (XOR/AND/OR) 3..6-input counter: no '+', so Yosys cannot turn it
    into a $macc/carry chain; ABC packs each output into one LUT."""
    def fa(a, b, c, t):  # full adder -> (sum, carry) expressions via wires
        return ([f"  wire {t}s = {a} ^ {b} ^ {c};",
                 f"  wire {t}c = ({a} & {b}) | ({c} & ({a} ^ {b}));"], f"{t}s", f"{t}c")
    out: list[str] = []
    if len(g) == 3:
        ls, s_, c_ = fa(*g, f"{n}_a")
        return ls + [f"  assign {n} = {{{c_}, {s_}}};"]
    g = g + ["1'b0"] * (6 - len(g))
    l1, s1, c1 = fa(g[0], g[1], g[2], f"{n}_a")
    l2, s2, c2 = fa(g[3], g[4], g[5], f"{n}_b")
    out += l1 + l2
    out.append(f"  wire {n}_h = {s1} & {s2};")
    l3, s3, c3 = fa(c1, c2, f"{n}_h", f"{n}_c")
    out += l3
    out.append(f"  assign {n} = {{{c3}, {s3}, {s1} ^ {s2}}};")
    return out


def v_colcomp(w: int) -> str:
    """Column compressor tree: counters of up to 6 bits per weight column."""
    ow = cw(w)
    lines: list[str] = []
    cols: list[list[str]] = [[f"x[{i}]" for i in range(w)]] + [[] for _ in range(ow + 3)]
    ctr = 0
    stage = 0
    while max(len(c) for c in cols) > 2:
        new: list[list[str]] = [[] for _ in cols]
        for j, col in enumerate(cols):
            bits = list(col)
            while len(bits) >= 3:
                take = min(6, len(bits))
                grp, bits = bits[:take], bits[take:]
                nout = cw(take)
                n = f"k{ctr}"
                ctr += 1
                lines.append(f"  wire [{nout-1}:0] {n};")
                lines.extend(_counter_gates(n, grp))
                for o in range(nout):
                    if j + o < len(new):
                        new[j + o].append(f"{n}[{o}]")
            new[j].extend(bits)
        cols = new
        stage += 1
    row_a = [c[0] if len(c) > 0 else "1'b0" for c in cols[:ow]]
    row_b = [c[1] if len(c) > 1 else "1'b0" for c in cols[:ow]]
    lines.append(f"  wire [{ow-1}:0] ra = {{{', '.join(reversed(row_a))}}};")
    lines.append(f"  wire [{ow-1}:0] rb = {{{', '.join(reversed(row_b))}}};")
    lines.append("  assign c = ra + rb;")
    lines.append(f"  // {stage} compressor stages, {ctr} counters")
    return wrap("pc_colcomp", w, "\n".join(lines))


def v_rtl_tree(w: int, pipe_every: int = 2) -> str:
    """hw/rtl/popcount.v (the '+' adder tree) registered every PIPE_EVERY levels, as mvtu used it."""
    body = f"  popcount #(.N({w}), .PIPE_EVERY({pipe_every})) u (.clk(clk), .en(1'b1), .in_data(x), .out_data(c));"
    return wrap("pc_rtl_tree", w, body)


def v_rtl_comp(w: int, pipe_every: int = 2) -> str:
    """hw/rtl/popcount_compressor.v: registered 6:3 counters, then the same tree of their counts."""
    body = (f"  popcount_compressor #(.N({w}), .PIPE_EVERY({pipe_every})) u (.clk(clk), .en(1'b1), "
            f".in_data(x), .out_data(c));")
    return wrap("pc_rtl_comp", w, body)


VARIANTS = {"naive": v_naive, "addtree": v_addtree, "lut63": v_lut63, "colcomp": v_colcomp,
            "rtl_tree": v_rtl_tree, "rtl_comp": v_rtl_comp}
# variants built on the shipped modules: the library files they instantiate
RTL_LIBS = {"rtl_tree": ("popcount", "adder_tree"), "rtl_comp": ("popcount_compressor", "adder_tree")}


def run_one(variant: str, w: int, root: Path) -> dict:
    wd = root / f"{variant}_{w}"
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / f"pc_{variant}.v"
    src.write_text(VARIANTS[variant](w))
    t0 = time.monotonic()
    libs = [rtl_dir() / f"{m}.v" for m in RTL_LIBS.get(variant, ())]
    res = synthesize([src] + libs, f"pc_{variant}", workdir=wd, flatten=True)
    t = res.total
    return {"variant": variant, "w": w, "lut": t.lut_total, "lut_per_bit": t.lut_total / w,
            "carry4": t.carry4, "muxf7": t.muxf7, "ff": t.ff,
            "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    root = a.workdir or Path(tempfile.mkdtemp(prefix="popcount_luts_"))
    jobs = [(v, w) for w in a.widths for v in a.variants]
    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        rows = list(ex.map(lambda vw: run_one(vw[0], vw[1], root), jobs))
    naive = {r["w"]: r["lut"] for r in rows if r["variant"] == "naive"}
    print(f"{'W':>5} {'variant':>8} {'LUT':>6} {'LUT/bit':>8} {'CARRY4':>7} "
          f"{'vs naive':>8} {'synth s':>7}")
    for r in rows:
        ratio = f"{r['lut'] / naive[r['w']]:.2f}" if r["w"] in naive else "-"
        r["ratio_vs_naive"] = None if ratio == "-" else float(ratio)
        print(f"{r['w']:>5} {r['variant']:>8} {r['lut']:>6} {r['lut_per_bit']:>8.2f} "
              f"{r['carry4']:>7} {ratio:>8} {r['seconds']:>7}")
    (root / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"(Yosys synth_xilinx -flatten, in/out registered; workdirs under {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
