"""sim/reference_conv.py: im2col and pooling against direct loops and PyTorch
(conv2d through the mvtu matrix form, max_pool2d). No simulator needed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bnnforge.sim.reference_conv import conv_weight_matrix, im2col_channels_last, maxpool_channels_last, ofm_dim


def _im2col_loops(x, k, s, pad):
    h, w, c = x.shape
    xp = np.zeros((h + 2 * pad, w + 2 * pad, c), dtype=x.dtype)
    xp[pad:pad + h, pad:pad + w] = x
    od = ofm_dim(h, k, s, pad)
    rows = []
    for oy, ox in itertools.product(range(od), range(od)):
        rows.append([xp[oy * s + ky, ox * s + kx, ch]
                     for ky in range(k) for kx in range(k) for ch in range(c)])
    return np.array(rows, dtype=x.dtype).reshape(od * od, k * k * c)


@pytest.mark.parametrize("h,c,k,s,pad", [(6, 3, 3, 1, 0), (7, 2, 3, 2, 1), (9, 1, 1, 2, 0),
                                         (5, 4, 2, 1, 0), (12, 2, 5, 2, 0), (4, 2, 1, 1, 1),
                                         (3, 2, 3, 1, 1), (11, 3, 5, 3, 2)])
def test_im2col_matches_loops(h, c, k, s, pad):
    rng = np.random.default_rng(h * 100 + k * 10 + s)
    x = rng.integers(-128, 128, size=(h, h, c))
    got = im2col_channels_last(x, k, s, pad)
    assert np.array_equal(got, _im2col_loops(x, k, s, pad))
    # batched form = per-frame form
    xb = rng.integers(0, 2, size=(3, h, h, c))
    gb = im2col_channels_last(xb, k, s, pad)
    assert gb.shape == (3, ofm_dim(h, k, s, pad) ** 2, k * k * c)
    for n in range(3):
        assert np.array_equal(gb[n], _im2col_loops(xb[n], k, s, pad))


def test_ofm_dim_floor_and_errors():
    assert ofm_dim(32, 3) == 30 and ofm_dim(9, 2, 2) == 4 and ofm_dim(7, 3, 2, 1) == 4
    with pytest.raises(ValueError):
        ofm_dim(2, 5)


@pytest.mark.parametrize("k,s,pad", [(3, 1, 0), (3, 2, 1), (5, 1, 2), (2, 2, 0)])
def test_conv_through_im2col_equals_torch(k, s, pad):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(k * 7 + s)
    n, h, c, o = 2, 9, 3, 4
    x = rng.integers(-3, 4, size=(n, h, h, c))
    wc = rng.choice([-1, 1], size=(o, c, k, k))
    ref = torch.nn.functional.conv2d(torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64),
                                     torch.tensor(wc, dtype=torch.float64), stride=s, padding=pad)
    cols = im2col_channels_last(x, k, s, pad)                    # [N, OH*OW, K*K*C]
    y = cols @ conv_weight_matrix(wc).T                          # [N, OH*OW, O]
    od = ofm_dim(h, k, s, pad)
    assert np.array_equal(y.reshape(n, od, od, o).transpose(0, 3, 1, 2), ref.numpy().astype(np.int64))


@pytest.mark.parametrize("h,p", [(4, 2), (6, 3), (10, 2), (3, 1)])
def test_maxpool_equals_torch_and_or(h, p):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(h + p)
    x = rng.integers(0, 256, size=(2, h, h, 5))
    ref = torch.nn.functional.max_pool2d(torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64), p)
    assert np.array_equal(maxpool_channels_last(x, p), ref.numpy().transpose(0, 2, 3, 1).astype(np.int64))
    # 1-bit codes: max = OR, for {0,1} and for bipolar (bit 1 = +1) alike
    b = rng.integers(0, 2, size=(h, h, 3))
    bip = maxpool_channels_last(2 * b - 1, p)
    assert np.array_equal(maxpool_channels_last(b, p), (bip + 1) // 2)
    with pytest.raises(ValueError):
        maxpool_channels_last(np.zeros((h + 1, h + 1, 1)), p + 1 if (h + 1) % (p + 1) else p + 2)
