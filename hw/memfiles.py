"""Writers for the ``$readmemh`` images defined in docs/hw_interfaces.md.

Kept free of anything but numpy so that the code generator (here), the golden model
and the testbenches all produce byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def write_memh(path: str | Path, words: Iterable[int], width: int) -> Path:
    """One hex word per line, MSB digit first, width rounded up to whole digits."""
    digits = max(1, (width + 3) // 4)
    mask = (1 << width) - 1
    lines = []
    for w in words:
        w = int(w)
        if w < 0 or w > mask:
            raise ValueError(f"word {w:#x} does not fit in {width} bits")
        lines.append(f"{w:0{digits}x}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def pack_fields(values: Sequence[int], field_bits: int) -> int:
    """Pack values (two's complement allowed) LSB-first into one integer."""
    mask = (1 << field_bits) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * field_bits)
    return word


def unpack_fields(word: int, n: int, field_bits: int, signed: bool = False) -> list[int]:
    mask = (1 << field_bits) - 1
    out = []
    for i in range(n):
        v = (int(word) >> (i * field_bits)) & mask
        if signed and v >> (field_bits - 1):
            v -= 1 << field_bits
        out.append(v)
    return out


def weight_words(W: np.ndarray, pe: int, simd: int) -> list[int]:
    """Weight image: W is (MH, MW) of {0,1} (1 = +1); address nf*SF + sf,
    bit p*SIMD + j = W[nf*PE + p, sf*SIMD + j]."""
    W = np.asarray(W)
    mh, mw = W.shape
    nf_, sf_ = mh // pe, mw // simd
    words = []
    for nf in range(nf_):
        for sf in range(sf_):
            bits = W[nf * pe:(nf + 1) * pe, sf * simd:(sf + 1) * simd].reshape(-1)
            words.append(pack_fields([int(b) for b in bits], 1))
    return words


def fold_words(words: list[int], fold: int, width: int) -> list[int]:
    """A block-RAM weight image of `fold` words per row (mvtu.v WEIGHT_FOLD): with
    R = ceil(len(words) / fold) rows, word b*R + r is field b (bits b*width up) of
    row r; the last field's words past the end are zero."""
    if fold < 1:
        raise ValueError(f"fold {fold} must be at least 1")
    rows = -(-len(words) // fold)
    out = [0] * rows
    for a, w in enumerate(words):
        b, r = divmod(a, rows)
        out[r] |= int(w) << (b * width)
    return out


def threshold_words(T: np.ndarray, pe: int, acc_bits: int) -> list[int]:
    """Threshold image: depth NF, field p = T[nf*PE + p], two's complement."""
    T = np.asarray(T).reshape(-1)
    return [pack_fields(T[nf * pe:(nf + 1) * pe], acc_bits) for nf in range(len(T) // pe)]


def multithreshold_words(T: np.ndarray, pe: int, acc_bits: int) -> list[int]:
    """Multi-threshold image (mvtu OUT_MODE 2): T is (MH, NT) with NT = 2^k - 1
    thresholds per output, non-decreasing along each row. Depth NF, width
    PE*NT*ACC_BITS; field p*NT + t (bits [(p*NT + t)*ACC_BITS +: ACC_BITS]) =
    T[nf*PE + p, t], two's complement."""
    T = np.asarray(T, dtype=np.int64)
    if T.ndim != 2:
        raise ValueError(f"multi-thresholds must be (MH, NT), got shape {T.shape}")
    mh, nt = T.shape
    if nt < 1 or (nt + 1) & nt:
        raise ValueError(f"{nt} thresholds per output: expected 2^k - 1")
    if mh % pe:
        raise ValueError(f"MH={mh} not divisible by PE={pe}")
    if np.any(np.diff(T, axis=1) < 0):
        raise ValueError("multi-thresholds must be non-decreasing along each output row")
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    if T.min() < lo or T.max() > hi:
        raise ValueError(f"a threshold does not fit {acc_bits} signed bits")
    return [pack_fields(T[nf * pe:(nf + 1) * pe].reshape(-1), acc_bits) for nf in range(mh // pe)]
