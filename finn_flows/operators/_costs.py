"""Shared first-order resource costs of the operator estimates (xc7).

Resource model (xc7, first order), fitted to Yosys synth_xilinx of our RTL for LFC
at the BNN-PYNQ folding (hierarchical synthesis, 2026-11): a synapse lane (XNOR/AND,
its share of the popcount tree and of the pipeline registers) costs about 2.6 LUT;
each PE's accumulator and threshold compare about 2 LUT per accumulator bit. Weight
memory goes to BRAM18 (the cheapest RAMB18 aspect ratio, 36x512 ... 1x16K) when it is
deep and large, which matched Yosys' BRAM count for LFC exactly; otherwise it becomes
LUT ROM, costed at one LUT per 32 bits. A k-bit (multi-threshold) output adds per PE
2^k-2 more ACC_BITS-wide comparators (1 LUT per bit) and a (2^k-1)-input popcount, plus
its MH*(2^k-1)*ACC_BITS threshold bits as LUT ROM (not fitted; first order, from the
same per-bit costs). Sliding windows and pools: their line buffers
(BRAM when large, else LUT RAM at 64 bits per LUT) plus address and mux logic.
Block-sparse layers (MVTUSparse): weight bits are the stored blocks only, cycles
max(SF, STEPS) per vector (see _mvtu_sparse_estimate).

Add/subtract lanes (multi-bit inputs) do not cost a flat amount: fitted to Yosys on a
lone 784 x 256 mvtu with 4-bit inputs (2026-12, PE x SIMD = 1 x 784, 4 x 196, 16 x 49,
64 x 49: 15,188 / 12,722 / 11,229 / 52,594 LUT), an input bit of a lane costs
1.42 + 0.354 * log2(SIMD) LUT, so one wide tree costs more than several narrow ones
of the same lanes (the flat 2.6 put PE 1 x SIMD 784 at 8,225 LUT and made automatic
folding pick it). XNOR/AND lanes keep the flat 2.6: the same grid with 1-bit inputs
gave 2,140 (1 x 784) and 2,401 (16 x 49) LUT against 2,102 and 2,462 estimated.
"""
from __future__ import annotations

import math

def lane_luts(mode: str, pe: int, simd: int, input_bits: int) -> float:
    """LUTs of PE x SIMD synapse lanes and their trees (see the module docstring)."""
    if mode == "addsub":
        return pe * simd * input_bits * (1.42 + 0.354 * math.log2(simd))
    return pe * simd * 2.6
