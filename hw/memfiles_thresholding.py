"""Memory images of ``thresholding.v`` (multi-threshold requantization by a
pipelined binary search).

Thresholds ``T`` are (C, 2^k - 1), each row non-decreasing, two's complement
in ``t_bits``. Stage s of lane j holds, at word ``f*2^s + r``, the threshold
``T[f*lanes + j, r*2^(k-s) + 2^(k-1-s) - 1]``: the one that stage compares
with when the output bits above it are ``r``. One file per stage and lane,
``<prefix>_s<s>_l<j>.mem``, j in decimal padded to the digits of ``lanes-1``.
Numpy only, like hw/memfiles.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .memfiles import write_memh

__all__ = ["check_thresholds", "thresholding_image_name", "thresholding_images",
           "write_thresholding_images"]

_PREFIX = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_thresholds(T: np.ndarray, lanes: int, t_bits: int) -> tuple[int, int]:
    """Validate T for the unit; returns (C, k)."""
    T = np.asarray(T)
    if T.ndim != 2:
        raise ValueError(f"thresholds must be (C, 2^k - 1), got shape {T.shape}")
    c, nt = T.shape
    k = (nt + 1).bit_length() - 1
    if nt < 1 or (1 << k) != nt + 1 or k > 8:
        raise ValueError(f"{nt} thresholds per channel: expected 2^k - 1 with k = 1 .. 8")
    if lanes < 1 or c % lanes:
        raise ValueError(f"C={c} channels not a multiple of {lanes} lanes")
    if lanes > 10000:
        raise ValueError(f"{lanes} lanes: at most 10000")
    if np.any(np.diff(T, axis=1) < 0):
        raise ValueError("thresholds must be non-decreasing along each channel "
                         "(the binary search relies on it)")
    lo, hi = -(1 << (t_bits - 1)), (1 << (t_bits - 1)) - 1
    if T.min() < lo or T.max() > hi:
        raise ValueError(f"a threshold does not fit {t_bits} signed bits")
    return c, k


def thresholding_image_name(prefix: str, stage: int, lane: int, lanes: int) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"image prefix {prefix!r}: letters, digits and _ only (at most 64)")
    digits = len(str(max(lanes - 1, 0)))
    return f"{prefix}_s{stage}_l{lane:0{digits}d}.mem"


def thresholding_images(T: np.ndarray, lanes: int, t_bits: int) -> dict[tuple[int, int], list[int]]:
    """{(stage, lane): words}, words as unsigned t_bits-bit integers."""
    T = np.asarray(T, dtype=np.int64)
    c, k = check_thresholds(T, lanes, t_bits)
    cf = c // lanes
    mask = (1 << t_bits) - 1
    images = {}
    for s in range(k):
        r = np.arange(1 << s)
        cols = r * (1 << (k - s)) + (1 << (k - 1 - s)) - 1
        for j in range(lanes):
            rows = T[j::lanes]                   # channels f*lanes + j, f = 0 .. cf-1
            assert rows.shape[0] == cf
            images[(s, j)] = [int(v) & mask for v in rows[:, cols].reshape(-1)]
    return images


def write_thresholding_images(directory: str | Path, prefix: str, T: np.ndarray, lanes: int,
                              t_bits: int) -> list[Path]:
    """Write every image of the unit into *directory*; returns the paths."""
    images = thresholding_images(T, lanes, t_bits)
    return [write_memh(Path(directory) / thresholding_image_name(prefix, s, j, lanes), words, t_bits)
            for (s, j), words in images.items()]
