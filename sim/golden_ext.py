"""Golden references for the hardware units added for the binarization methods
(docs/hw_interfaces.md: "Multi-threshold output" and "Block-sparse
matrix-vector unit"). numpy only, so that sim/golden.py, the compiler and the
testbenches can all import it.
"""
from __future__ import annotations

import numpy as np


def multithreshold(acc: np.ndarray, T: np.ndarray) -> np.ndarray:
    """FINN MultiThreshold: y[n, o] = #{t : acc[n, o] >= T[o, t]}.

    acc: [N, MH] integers; T: [MH, NT] (NT = 2^k - 1, rows non-decreasing).
    Returns [N, MH] int64 in [0, NT] (an unsigned k-bit value)."""
    acc = np.asarray(acc, dtype=np.int64)
    T = np.asarray(T, dtype=np.int64)
    if T.ndim == 1:
        T = T[:, None]
    return (acc[:, :, None] >= T[None, :, :]).sum(axis=2).astype(np.int64)


# ---------------------------------------------------------------- block-sparse unit
from bnnforge.hw.memfiles_sparse import (  # noqa: E402  (re-exported: the builder is shared with the compiler)
    SparseLayer, acc_bits_for_matrix, build_sparse_layer, row_const_words, sched_field_bits,
)

__all__ = ["multithreshold", "decode_inputs", "sparse_dot", "sparse_outputs", "sparse_images",
           "SparseLayer", "acc_bits_for_matrix", "build_sparse_layer", "row_const_words",
           "sched_field_bits"]


def decode_inputs(x: np.ndarray, input_kind: str) -> np.ndarray:
    """Codes on the wire -> values: bipolar bit 0 means -1; unipolar / int as given."""
    x = np.asarray(x, dtype=np.int64)
    return 2 * x - 1 if input_kind == "bipolar" else x


def sparse_dot(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """acc[n, o] = sum_i W[o, i] * x[n, i]: x decoded values [N, MW], W integers [MH, MW]."""
    return np.asarray(x, dtype=np.int64) @ np.asarray(W, dtype=np.int64).T


def sparse_outputs(acc: np.ndarray, out_mode: int, T: np.ndarray | None = None) -> np.ndarray:
    """mvtu / mvtu_sparse output: 0 threshold (acc >= T[o]), 1 raw, 2 multi-threshold."""
    if out_mode == 0:
        return (np.asarray(acc) >= np.asarray(T, dtype=np.int64)[None, :]).astype(np.int64)
    if out_mode == 2:
        return multithreshold(acc, T)
    return np.asarray(acc, dtype=np.int64)


def sparse_images(W: np.ndarray, pe: int, simd: int, weight_kind: str = "sparse01",
                  input_kind: str = "bipolar", acc_bits: int | None = None,
                  m: int | None = None, input_bits: int = 1, input_signed: bool = False) -> dict:
    """Schedule + memory images + stats for mvtu_sparse from an integer matrix.

    Returns {"layer", "weight_words", "schedule_words", "row_const_words" (or None),
    "acc_bits", "stats"}; stats has nonzero_blocks, stored_bits, dense_bits,
    bits_saved, steps (= scheduled cycles) and cycles_per_frame = max(SF, steps)."""
    layer = build_sparse_layer(W, pe, simd, weight_kind, m)
    if acc_bits is None:
        acc_bits = acc_bits_for_matrix(W, input_kind, input_bits, input_signed)
    c = layer.row_constants(input_kind)
    return {
        "layer": layer,
        "weight_words": layer.weight_words(),
        "schedule_words": layer.schedule_words(),
        "row_const_words": None if c is None else row_const_words(c, pe, acc_bits),
        "acc_bits": acc_bits,
        "stats": layer.stats(),
    }
