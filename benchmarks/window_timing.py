"""Clock and size of `sliding_window` alone at each CNV layer's parameters.

For every CNV window (BNN-PYNQ folding): the Yosys `synth_xilinx` + `sta` logic delay
(xc7 cells, no routing) with the path's start, and LUT/FF/BRAM18. `--pnr` adds the
post-route Fmax on an ECP5 LFE5U-85F (nextpnr-ecp5) of the largest ring (conv2's
parameters) in a wrapper that fixes them; `--test-shapes` adds the other shapes of
tests/hw/test_sliding_window.py (strides, padding, K 1-5, LUTRAM rings).

    .venv/bin/python benchmarks/window_timing.py [--source FILE] [--pnr] [--test-shapes]

`--source` measures another version of the module, e.g. an earlier commit's:
`git show REV:hw/rtl/sliding_window.v > /tmp/sw.v` then `--source /tmp/sw.v`.
"""
import argparse
import tempfile
from pathlib import Path

# (IFM_DIM, C, SIMD, K, S, PAD, EB), as in tests/hw/test_sliding_window.py
CNV = {
    "conv1": (32, 3, 3, 3, 1, 0, 8),
    "conv2": (30, 64, 32, 3, 1, 0, 1),
    "conv3": (14, 64, 32, 3, 1, 0, 1),
    "conv4": (12, 128, 32, 3, 1, 0, 1),
    "conv5": (5, 128, 32, 3, 1, 0, 1),
    "conv6": (3, 256, 32, 3, 1, 0, 1),
}
TEST_SHAPES = {
    "K5_S2_P2": (11, 8, 2, 5, 2, 2, 8),
    "K3_S2_P1": (13, 6, 1, 3, 2, 1, 1),
    "K5_S2": (12, 6, 3, 5, 2, 0, 1),
    "K2_S3": (10, 2, 1, 2, 3, 0, 8),
    "K1_S2": (9, 2, 1, 1, 2, 0, 8),
    "K5_P1": (7, 4, 4, 5, 1, 1, 1),
}


def _params(shape):
    ifm, c, simd, k, s, pad, eb = shape
    return dict(IFM_DIM=ifm, C=c, K=k, S=s, PAD=pad, EB=eb, SIMD=simd)


def _wrapper(params: dict, width: int) -> str:
    ports = ", ".join(f".{n}({n})" for n in ("clk", "rst_n", "in_data", "in_valid", "in_ready",
                                             "out_data", "out_valid", "out_ready"))
    return (f"module window_top(input wire clk, input wire rst_n, input wire [{width - 1}:0] in_data,\n"
            f"    input wire in_valid, output wire in_ready, output wire [{width - 1}:0] out_data,\n"
            f"    output wire out_valid, input wire out_ready);\n"
            f"sliding_window #(" + ", ".join(f".{k}({v})" for k, v in params.items()) + f") u_window({ports});\n"
            "endmodule\n")


def main():
    from bnnforge.hw.synth import logic_delay, synthesize
    from bnnforge.hw.timing import pnr_fmax
    from bnnforge.resources import rtl_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=rtl_dir() / "sliding_window.v")
    ap.add_argument("--pnr", action="store_true", help="place and route conv2's window on the ECP5")
    ap.add_argument("--test-shapes", action="store_true", help="also the test set's other shapes")
    a = ap.parse_args()
    src = a.source.resolve()
    shapes = dict(CNV, **(TEST_SHAPES if a.test_shapes else {}))
    print(f"{src}")
    print("| window | IFM, C, SIMD, K, S, PAD, EB | xc7 sta ns | path start | LUT | FF | BRAM18 |")
    print("|---|---|---:|---|---:|---:|---:|")
    total_lut = total_ff = 0
    for name, shape in shapes.items():
        p = _params(shape)
        with tempfile.TemporaryDirectory() as td:
            d = logic_delay([src], "sliding_window", Path(td) / "sta", parameters=p)
            r = synthesize([src], "sliding_window", workdir=Path(td) / "synth", parameters=p).total
        if name in CNV:
            total_lut += r.lut_total
            total_ff += r.ff
        print(f"| {name} | {', '.join(map(str, shape))} | {d['logic_delay_ns']} | {d['start']} | "
              f"{r.lut_total} | {r.ff} | {r.bram18} |", flush=True)
    print(f"| CNV's six | | | | {total_lut} | {total_ff} | |")
    if a.pnr:
        p = _params(CNV["conv2"])
        with tempfile.TemporaryDirectory() as td:
            top = Path(td) / "window_top.v"
            top.write_text(_wrapper(p, p["SIMD"] * p["EB"]))
            f = pnr_fmax([src, top], "window_top", Path(td) / "pnr", clock="clk")
        util = ", ".join(f"{k} {v}" for k, v in f["utilization"].items())
        print(f"ECP5 LFE5U-85F, conv2's window: {f['fmax_mhz']} MHz post-route "
              f"({f['start']} -> {f['end']}); {util}")


if __name__ == "__main__":
    main()
