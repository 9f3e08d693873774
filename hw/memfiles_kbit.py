"""k-bit weight layers for hw/rtl/mvtu_kbit.v: the weight image, and the code
generator's stage for an MVTUKbit node (docs/hw_interfaces.md, "k-bit weight unit").

Weight image: W (MH, MW) of signed integers in [-2^(B-1), 2^(B-1)-1], B =
WEIGHT_BITS; depth NF*SF, address nf*SF + sf, field p*SIMD + j (B bits each, two's
complement) = W[nf*PE + p, sf*SIMD + j]. Thresholds are mvtu's images.

The weight helpers are numpy only, like hw/memfiles.py, so that the code generator and
the testbenches write identical files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bnnforge.errors import BnnforgeError

from .hwgraph import MODES, attr_str, initializer
from .memfiles import multithreshold_words, pack_fields, threshold_words, write_memh
from .stages.mvtu import mvtu_pipe_every

MIN_WEIGHT_BITS, MAX_WEIGHT_BITS = 2, 4
KBIT_ARCHS = {"lane_products": 0, "bit_planes": 1}
# The unit's chunk sums: lane products (ARCH 0) cost fewer LUTs than bit planes at every
# width measured (docs/hw_interfaces.md), so the compiler uses them.
DEFAULT_ARCH = "lane_products"


def weight_bits_for(W: np.ndarray) -> int:
    """Smallest two's-complement width (>= 2) holding every weight."""
    W = np.asarray(W, dtype=np.int64)
    lo, hi = int(W.min(initial=0)), int(W.max(initial=0))
    b = MIN_WEIGHT_BITS
    while lo < -(1 << (b - 1)) or hi > (1 << (b - 1)) - 1:
        b += 1
    return b


def kbit_weight_words(W: np.ndarray, pe: int, simd: int, wbits: int) -> list[int]:
    """Weight image words of width PE*SIMD*wbits (see the module docstring)."""
    W = np.asarray(W, dtype=np.int64)
    mh, mw = W.shape
    if mh % pe or mw % simd:
        raise ValueError(f"MH={mh}, MW={mw} not divisible by PE={pe}, SIMD={simd}")
    lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    if W.size and (W.min() < lo or W.max() > hi):
        raise ValueError(f"a weight does not fit {wbits} signed bits")
    words = []
    for nf in range(mh // pe):
        for sf in range(mw // simd):
            blk = W[nf * pe:(nf + 1) * pe, sf * simd:(sf + 1) * simd].reshape(-1)
            words.append(pack_fields([int(v) for v in blk], wbits))
    return words


def kbit_weights_in_bram(a: dict) -> bool:
    """hw/memory_style.py's rule for the k-bit weight memory (depth NF*SF, MW*MH*B bits):
    block RAM when deep and large, else LUT ROM."""
    depth = (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"])
    return depth >= 128 and a["MW"] * a["MH"] * int(a["weight_bits"]) >= 16384


def kbit_stage(model: onnx.ModelProto, node, a: dict, out_dir: Path, i: int, name: str,
               clk_period_ns: float | None = None) -> tuple[dict, dict]:
    """An MVTUKbit node -> mvtu_kbit: memory images layer<i>_weights/_thresholds.mem
    (named from the layer index only), RTL parameters, the manifest's layer entry and
    the stage entry. `name` is the node's comment-safe name; `clk_period_ns` (FINN's
    synth_clk_period_ns) sets the adder tree's pipelining, as for mvtu."""
    mw, mh, pe, simd, acc = a["MW"], a["MH"], a["PE"], a["SIMD"], a["acc_bits"]
    if mh % pe or mw % simd:
        raise BnnforgeError(f"node {name!r}: folding PE={pe}, SIMD={simd} does not divide MH={mh}, MW={mw}")
    if not 2 <= acc <= 32:
        raise BnnforgeError(f"node {name!r}: acc_bits = {acc}; mvtu_kbit takes 2..32")
    mode = attr_str(a["mode"])
    if mode not in MODES:
        raise BnnforgeError(f"node {name!r}: unknown mode {mode!r}")
    wb = int(a.get("weight_bits", 0))
    if not MIN_WEIGHT_BITS <= wb <= MAX_WEIGHT_BITS:
        raise BnnforgeError(f"node {name!r}: weight_bits = {wb}; mvtu_kbit takes "
                            f"{MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS}-bit weights")
    w = initializer(model, node.input[1]).astype(np.int64)
    if w.shape != (mh, mw):
        raise BnnforgeError(f"node {name!r}: weights of shape {list(w.shape)}, expected {mh}x{mw}")
    if w.size and (w.min() < -(1 << (wb - 1)) or w.max() > (1 << (wb - 1)) - 1):
        raise BnnforgeError(f"node {name!r}: a weight does not fit {wb} signed bits")
    out_name = attr_str(a.get("out_mode", "accumulator"))
    out_modes = {"threshold": 0, "accumulator": 1, "multithreshold": 2}
    if out_name not in out_modes:
        raise BnnforgeError(f"node {name!r}: unknown out_mode {out_name!r}")
    out_mode = out_modes[out_name]
    ob = {0: 1, 1: acc, 2: int(a.get("out_bits", 1))}[out_mode]
    # mvtu's model of adder levels per clock also bounds this unit's tree: measured with
    # Yosys sta on the zoo's W2A2 layers (SIMD 8 and 49, 2-bit lanes), one level per clock
    # 1.93-2.01 ns, two 1.98-2.29, three 2.37-2.53, against the model's 2.05, 2.45, 2.85
    pipe_every = mvtu_pipe_every(simd, clk_period_ns, name)
    wfile, tfile = f"layer{int(i)}_weights.mem", f"layer{int(i)}_thresholds.mem"
    write_memh(out_dir / wfile, kbit_weight_words(w, pe, simd, wb), pe * simd * wb)
    if out_mode != 1:
        if len(node.input) < 3:
            raise BnnforgeError(f"node {name!r}: out_mode {out_name} needs thresholds")
        t = initializer(model, node.input[2]).astype(np.int64)
        nt = (1 << ob) - 1
        if (out_mode == 0 and t.shape != (mh,)) or (out_mode == 2 and (not 1 <= ob <= 4 or t.shape != (mh, nt))):
            raise BnnforgeError(f"node {name!r}: thresholds of shape {list(t.shape)} do not fit {mh} outputs "
                                f"of {ob} bit(s)")
        lo, hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
        t2 = t.reshape(mh, -1)
        bad = np.nonzero(np.any((t2 < lo) | (t2 > hi), axis=1))[0]
        if len(bad):
            row = t2[bad[0]]
            raise BnnforgeError(f"node {name!r}: threshold {int(row[(row < lo) | (row > hi)][0])} of output "
                                f"{int(bad[0])} overflows the {acc}-bit accumulator range [{lo}, {hi}]")
        if out_mode == 2 and np.any(np.diff(t2, axis=1) < 0):
            raise BnnforgeError(f"node {name!r}: multi-thresholds must be sorted per output")
        if out_mode == 0:
            write_memh(out_dir / tfile, threshold_words(t, pe, acc), pe * acc)
        else:
            write_memh(out_dir / tfile, multithreshold_words(t, pe, acc), pe * nt * acc)
    ib = a["input_bits"] if mode == "addsub" else 1
    offset = int(a.get("input_offset", 0))
    pixels = int(a.get("pixels", 1))
    arch = attr_str(a.get("arch", DEFAULT_ARCH))
    if arch not in KBIT_ARCHS:
        raise BnnforgeError(f"node {name!r}: unknown arch {arch!r}; expected one of {', '.join(KBIT_ARCHS)}")
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, MODE=MODES[mode], WEIGHT_BITS=wb, ARCH=KBIT_ARCHS[arch],
                  INPUT_BITS=ib, INPUT_SIGNED=int(a["input_signed"]) if ib > 1 else 0)
    if offset:  # levels of a signed k-bit activation: the unit subtracts the offset
        params["INPUT_OFFSET"] = offset
    params.update(ACC_BITS=acc, OUT_MODE=out_mode)
    if out_mode == 2:
        params["OUT_BITS"] = ob
    params.update(WEIGHT_RAM=int(kbit_weights_in_bram(a)), PIPE_EVERY=pipe_every, WEIGHT_FILE=wfile)
    if out_mode != 1:
        params["THRESH_FILE"] = tfile
    q = dict(index=i, kind="kbit", source=name)
    q.update(params)
    q.update(OUT_BITS=ob if out_mode == 2 else 1, THRESH_FILE=params.get("THRESH_FILE", ""), pixels=pixels,
             in_width=simd * ib, out_width=pe * ob)
    cycles = pixels * (mw // simd) * (mh // pe)
    stage = dict(kind="mvtu_kbit", module="mvtu_kbit", source=name, layer=q, params=params,
                 in_width=q["in_width"], out_width=q["out_width"], in_beats=pixels * mw // simd, cycles=cycles,
                 comment=f"{mw}x{mh}, SIMD {simd}, PE {pe}, mode {params['MODE']}, {wb}-bit weights ({arch})"
                         + (f", {ob}-bit outputs" if out_mode == 2 else "")
                         + (f", {pixels} pixels" if pixels > 1 else ""))
    return q, stage
