"""Block-RAM weight memories of pipelined mvtus: words folded side by side in a row
(hw/memory_style.py weight_fold, hw/memfiles.py fold_words, mvtu.v WEIGHT_FOLD)."""
from __future__ import annotations

import math
import random

import pytest

from bnnforge.hw.memfiles import fold_words
from bnnforge.hw.memory_style import BRAM18_SHAPES, MAX_WEIGHT_FOLD, bram18_for, weight_fold


@pytest.mark.parametrize("n,fold", [(16, 1), (16, 3), (450, 7), (32, 32), (5, 2)])
def test_fold_words_puts_word_b_times_rows_plus_r_in_field_b_of_row_r(n, fold):
    rng = random.Random(n * 100 + fold)
    width = 11
    words = [rng.getrandbits(width) for _ in range(n)]
    rows = math.ceil(n / fold)
    image = fold_words(words, fold, width)
    assert len(image) == rows
    for a, w in enumerate(words):
        b, r = divmod(a, rows)
        assert (image[r] >> (b * width)) & ((1 << width) - 1) == w
    # padding past the last word is zero, and nothing above the last field
    assert all(x < (1 << (fold * width)) for x in image)
    for a in range(n, rows * fold):
        b, r = divmod(a, rows)
        assert (image[r] >> (b * width)) & ((1 << width) - 1) == 0


def _rows_fit(width, depth, fold):
    rows = math.ceil(depth / fold)
    return any(d >= rows for _, d in BRAM18_SHAPES)


@pytest.mark.parametrize("width,depth", [
    (128, 2304),     # CNV conv5 at the BNN-PYNQ folding (PE 4 x SIMD 32)
    (32, 18432),     # CNV fc1 (PE 1 x SIMD 32): deeper than one RAMB18 at any ratio
    (8, 32768),      # CNV fc2 (PE 1 x SIMD 8)
    (1568, 512),     # LFC layer 0: already one row per word
    (2048, 512),     # LFC layers 1-2
    (512, 144),      # CNV conv3
])
def test_weight_fold_never_cascades_in_depth_and_never_costs_more(width, depth):
    fold, n = weight_fold(width, depth)
    assert 1 <= fold <= MAX_WEIGHT_FOLD
    assert _rows_fit(width, depth, fold)
    # the RAMB18s of the folded shape, and no more than the unfolded memory at its best ratio
    rows = math.ceil(depth / fold)
    assert n == min(math.ceil(fold * width / w) for w, d in BRAM18_SHAPES if d >= rows)
    assert n <= bram18_for(width, depth)
    # no smaller fold fits in as few RAMB18s
    for f in range(1, fold):
        if _rows_fit(width, depth, f):
            r = math.ceil(depth / f)
            assert min(math.ceil(f * width / w) for w, d in BRAM18_SHAPES if d >= r) > n


def test_shallow_memories_stay_unfolded():
    assert weight_fold(1568, 512) == (1, bram18_for(1568, 512))
    assert weight_fold(512, 144)[0] == 1
