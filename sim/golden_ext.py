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
