"""numpy reference of the convolution-side stream modules (docs/hw_interfaces.md).

Feature maps are channels last: ``x[y, x, c]`` (or ``x[n, y, x, c]`` for a
batch), the order in which the stream carries them (pixels row-major, channel
minor). Shared by the cocotb test drivers of ``hw/rtl/sliding_window.v`` and
``hw/rtl/maxpool_bin.v`` and by the compiler's golden model, so everything is
vectorized and works on integer codes of any dtype (bits, int8, ...).

- :func:`ofm_dim` -- output size of a K x K, stride S, padding PAD window
  (floor, like PyTorch).
- :func:`im2col_channels_last` -- what ``sliding_window`` emits: per output
  pixel (oy major, ox minor) the K*K*C window in order (ky, kx, c), c minor.
- :func:`maxpool_channels_last` -- what ``maxpool_bin`` emits: P x P, stride P
  max pooling (for 1-bit codes this is OR, i.e. max for both {0,1} and
  bipolar with bit 1 = +1).

A conv layer with weights ``Wc[o, c, ky, kx]`` (PyTorch order) is then the
mvtu product ``im2col(x) @ Wm.T`` with ``Wm = Wc.transpose(0, 2, 3, 1)
.reshape(O, K*K*C)`` (see :func:`conv_weight_matrix`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["ofm_dim", "im2col_channels_last", "maxpool_channels_last", "conv_weight_matrix"]


def ofm_dim(ifm_dim: int, k: int, s: int = 1, pad: int = 0) -> int:
    """floor((IFM_DIM + 2*PAD - K) / S) + 1; raises if the window does not fit."""
    if k < 1 or s < 1 or pad < 0:
        raise ValueError(f"bad window K={k} S={s} PAD={pad}")
    if k > ifm_dim + 2 * pad:
        raise ValueError(f"K={k} larger than the padded input {ifm_dim}+2*{pad}")
    return (ifm_dim + 2 * pad - k) // s + 1


def im2col_channels_last(x: np.ndarray, K: int, S: int = 1, PAD: int = 0,
                         pad_value: int = 0) -> np.ndarray:
    """Sliding windows of a channels-last map, as rows of the mvtu input.

    x: ``[H, W, C]`` or ``[N, H, W, C]``. Returns ``[OH*OW, K*K*C]`` (or
    ``[N, OH*OW, K*K*C]``): row ``oy*OW + ox``, column ``(ky*K + kx)*C + c``
    holds ``xp[oy*S + ky, ox*S + kx, c]`` where ``xp`` is ``x`` padded by PAD
    on every side with ``pad_value`` (the hardware pads with the all-zero
    code, i.e. ``pad_value=0``; for bipolar codes that means -1).
    """
    x = np.asarray(x)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected [H, W, C] or [N, H, W, C], got shape {x.shape}")
    n, h, w, c = x.shape
    if h != w:
        raise ValueError(f"square maps only, got {h}x{w}")
    od = ofm_dim(h, K, S, PAD)
    if PAD:
        x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), constant_values=pad_value)
    # [N, H', W', C, K, K] -> stride -> [N, OH, OW, K(ky), K(kx), C]
    win = sliding_window_view(x, (K, K), axis=(1, 2))[:, ::S, ::S][:, :od, :od]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n, od * od, K * K * c)
    return cols if batched else cols[0]


def maxpool_channels_last(x: np.ndarray, P: int) -> np.ndarray:
    """P x P max pooling, stride P, of ``[H, W, C]`` or ``[N, H, W, C]``
    (H, W multiples of P). Returns the pooled map, channels last, same dtype."""
    x = np.asarray(x)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    n, h, w, c = x.shape
    if h % P or w % P:
        raise ValueError(f"map {h}x{w} is not a multiple of the pool size {P}")
    y = x.reshape(n, h // P, P, w // P, P, c).max(axis=(2, 4))
    return y if batched else y[0]


def conv_weight_matrix(wc: np.ndarray) -> np.ndarray:
    """PyTorch conv weights ``[O, C, K, K]`` -> mvtu matrix ``[O, K*K*C]`` in
    the (ky, kx, c) column order of :func:`im2col_channels_last`."""
    wc = np.asarray(wc)
    o, c, kh, kw = wc.shape
    return wc.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
