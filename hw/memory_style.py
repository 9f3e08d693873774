"""Where a memory of the generated design goes: block RAM or LUTs.

One rule, used by code generation (the RTL's WEIGHT_RAM parameter) and by the
compiler's resource estimates, so that both always agree. Fitted to what Yosys
synth_xilinx does with our memories: deep and large ones map well onto RAMB18s
(the count matched Yosys exactly for LFC), small or shallow ones are cheaper as LUT
ROM; left to itself Yosys built a 144 x 512-bit conv weight ROM from ~5,000 LUTs.
"""
from __future__ import annotations

import math

# RAMB18 aspect ratios (width, depth) of the 7-series simple dual-port mode
BRAM18_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def bram18_for(width: int, depth: int) -> int:
    """RAMB18s for a width x depth memory, at the cheapest aspect ratio."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM18_SHAPES)


# Most words a pipelined mvtu stores side by side in one block-RAM row (its WEIGHT_FOLD):
# the register after the RAMs holds fold x width bits and S1r picks one of them.
MAX_WEIGHT_FOLD = 16


def weight_fold(width: int, depth: int) -> tuple[int, int]:
    """(fold, RAMB18s) of a pipelined mvtu's block-RAM weight memory of depth words of
    width bits. Stored fold words per row, ceil(depth / fold) rows deep, the memory fits
    one aspect ratio's depth, so no RAM sits behind a depth multiplexer (whose LUTs,
    after the RAM's slow clock-to-out, limited the clock); among those folds the fewest
    RAMB18s, then the narrowest row."""
    best = None
    for fold in range(1, min(MAX_WEIGHT_FOLD, depth) + 1):
        rows = math.ceil(depth / fold)
        fits = [math.ceil(fold * width / w) for w, d in BRAM18_SHAPES if d >= rows]
        if fits and (best is None or (min(fits), fold) < best):
            best = (min(fits), fold)
    if best is None:   # deeper than MAX_WEIGHT_FOLD x 16K words: cascaded in depth
        return 1, bram18_for(width, depth)
    return best[1], best[0]


def weights_in_bram(a: dict) -> bool:
    """Where an MVTU's weight memory goes (attrs MW, MH, SIMD, PE): block RAM when deep
    and large, else LUT ROM."""
    depth = (a["MW"] // a["SIMD"]) * (a["MH"] // a["PE"])
    return depth >= 128 and a["MW"] * a["MH"] >= 16384


def sparse_weights_in_bram(nnz: int, width: int) -> bool:
    """The same rule for mvtu_sparse, over its NNZ stored words of PE*SIMD bits."""
    return nnz >= 128 and nnz * width >= 16384
