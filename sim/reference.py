"""numpy reference models of the hw/rtl modules, written from docs/hw_interfaces.md.

Only numpy: used by the cocotb test drivers (tests/hw) to compute expected
streams, never by the RTL itself.
"""

from __future__ import annotations

import numpy as np

from .memfiles import pack_fields, unpack_fields


def acc_bits_for(mw: int, mode: int, input_bits: int = 1, input_signed: bool = False) -> int:
    """Smallest signed width holding [-MW*maxabs(x), +MW*maxabs(x)]."""
    if mode in (0, 1):
        maxabs = 1
    elif input_signed:
        maxabs = 1 << (input_bits - 1)
    else:
        maxabs = (1 << input_bits) - 1
    return (mw * maxabs).bit_length() + 1


def decode_inputs(x: np.ndarray, mode: int) -> np.ndarray:
    """Raw input codes -> values: bipolar bits in XNOR mode, else as given."""
    x = np.asarray(x, dtype=np.int64)
    return 2 * x - 1 if mode == 0 else x


def mvtu_acc(W01: np.ndarray, x: np.ndarray, mode: int) -> np.ndarray:
    """acc[f, o] = sum_i W[o, i] * x[f, i], W in {-1, +1} from bits W01."""
    Wpm = 2 * np.asarray(W01, dtype=np.int64) - 1
    return decode_inputs(x, mode) @ Wpm.T


def mvtu_outputs(acc: np.ndarray, out_mode: int, T: np.ndarray | None = None) -> np.ndarray:
    if out_mode == 0:
        return (acc >= np.asarray(T, dtype=np.int64)[None, :]).astype(np.int64)
    return acc


def frames_to_beats(values: np.ndarray, per_beat: int, bits: int) -> list[int]:
    """Frames (F, N) of element values -> stream beats, element j of beat k at
    bits [j*bits +: bits] (two's complement for negatives), frame after frame."""
    values = np.asarray(values, dtype=np.int64)
    f, n = values.shape
    assert n % per_beat == 0
    beats = []
    for fr in values:
        for k in range(n // per_beat):
            beats.append(pack_fields(fr[k * per_beat:(k + 1) * per_beat], bits))
    return beats


def beats_to_frames(beats: list[int], per_beat: int, bits: int, n: int,
                    signed: bool = False) -> np.ndarray:
    vals = []
    for b in beats:
        vals.extend(unpack_fields(b, per_beat, bits, signed))
    return np.asarray(vals, dtype=np.int64).reshape(-1, n)


def reslice(beats: list[int], in_width: int, out_width: int) -> list[int]:
    """Data width conversion: the LSB-first bit string re-cut into out_width words."""
    total = 0
    nbits = 0
    for b in beats:
        total |= int(b) << nbits
        nbits += in_width
    assert nbits % out_width == 0, "stream length must be a multiple of the output width"
    mask = (1 << out_width) - 1
    return [(total >> (k * out_width)) & mask for k in range(nbits // out_width)]


def label_select(values: np.ndarray) -> np.ndarray:
    """Index of the maximum per frame, lowest index on a tie (numpy.argmax)."""
    return np.argmax(np.asarray(values), axis=1)
