"""thresholding: the pipelined binary search against counting the thresholds
met (x >= T counts; ties, duplicate thresholds and thresholds beyond the
input range included), for k = 1 .. 8, signed and unsigned inputs, channels
folded over the lanes; random gaps and backpressure, one beat per cycle with
a ready output, latency k + 1. The image layout is checked on its own by a
software binary search over the images. Lint-clean for several parameter sets."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.hw.memfiles_thresholding import (
    check_thresholds, thresholding_image_name, thresholding_images, write_thresholding_images)
from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import LintError, lint, rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl

# (LANES, C, IN_BITS, SIGNED, OUT_BITS, T_BITS)
CONFIGS = [
    (2, 4, 8, 1, 2, 9),      # 2-bit outputs, CF = 2
    (1, 1, 4, 0, 1, 6),      # 1-bit output: one comparison, one channel
    (3, 9, 6, 1, 3, 7),      # CF = 3 (not a power of two)
    (4, 8, 8, 0, 4, 10),     # unsigned 8-bit to 4-bit
    (2, 2, 10, 1, 8, 11),    # k = 8: 255 thresholds per channel
    (1, 5, 3, 1, 5, 8),      # 31 thresholds over 8 input values: many ties, out of range
]
SLOW_CONFIGS = [
    (16, 64, 16, 1, 4, 17),  # wide
    (1, 7, 12, 0, 8, 14),    # k = 8, CF = 7, unsigned
    (11, 22, 5, 1, 6, 6),    # two-digit lane names, thresholds as narrow as the input
]


def count_reference(x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Thresholds met per channel: x (..., C), T (C, NT) -> (..., C)."""
    return (np.asarray(x, np.int64)[..., :, None] >= np.asarray(T, np.int64)).sum(axis=-1)


def random_thresholds(rng, c, k, in_bits, signed, t_bits):
    """Sorted rows that straddle the input range, with duplicates."""
    lo, hi = (-(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1) if signed else (0, (1 << in_bits) - 1)
    tlo, thi = -(1 << (t_bits - 1)), (1 << (t_bits - 1)) - 1
    nt = (1 << k) - 1
    T = rng.integers(max(tlo, lo - 3), min(thi, hi + 3) + 1, size=(c, nt))
    dup = rng.random((c, nt)) < 0.2
    T[:, 1:][dup[:, 1:]] = T[:, :-1][dup[:, 1:]]
    return np.sort(T, axis=1), lo, hi


def software_search(images, x, channel, lanes, k):
    """What the hardware does, one stage after another, from the images."""
    f, j = divmod(channel, lanes)
    r = 0
    for s in range(k):
        if x >= images[(s, j)][(f << s) + (r >> (k - s))]:
            r |= 1 << (k - 1 - s)
    return r


@pytest.mark.parametrize("cfg", CONFIGS + SLOW_CONFIGS)
def test_images_give_the_count_by_binary_search(cfg):
    lanes, c, in_bits, signed, k, t_bits = cfg
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    T, lo, hi = random_thresholds(rng, c, k, in_bits, signed, t_bits)
    images = thresholding_images(T, lanes, t_bits)
    assert sorted(images) == [(s, j) for s in range(k) for j in range(lanes)]
    assert all(len(w) == (c // lanes) << s for (s, j), w in images.items())
    signed_images = {key: [w - (1 << t_bits) if w >> (t_bits - 1) else w for w in words]
                     for key, words in images.items()}
    # every threshold and its neighbours, the ends of the input range and
    # beyond, and every other input value (a sample of them when there are many)
    span = np.arange(lo - 2, hi + 3) if hi - lo < 1024 else rng.integers(lo, hi + 1, 1024)
    xs = np.unique(np.concatenate([span, [lo - 2, lo, hi, hi + 2], (T.reshape(-1) + [[-1], [0], [1]]).reshape(-1)]))
    want = count_reference(xs[:, None].repeat(c, axis=1), T)
    for ch in range(c):
        got = [software_search(signed_images, int(x), ch, lanes, k) for x in xs]
        assert got == want[:, ch].tolist(), f"channel {ch}"


def test_image_names_and_bad_input(tmp_path):
    assert thresholding_image_name("t", 3, 7, 16) == "t_s3_l07.mem"
    assert thresholding_image_name("t", 0, 0, 1) == "t_s0_l0.mem"
    assert thresholding_image_name("t", 0, 10, 11) == "t_s0_l10.mem"
    with pytest.raises(ValueError, match="prefix"):
        thresholding_image_name("../x", 0, 0, 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        check_thresholds(np.array([[2, 1, 3]]), 1, 8)
    with pytest.raises(ValueError, match="2\\^k - 1"):
        check_thresholds(np.zeros((2, 4)), 1, 8)
    with pytest.raises(ValueError, match="fit 4 signed"):
        check_thresholds(np.array([[0, 1, 8]]), 1, 4)
    with pytest.raises(ValueError, match="multiple of 2 lanes"):
        check_thresholds(np.zeros((3, 1)), 2, 4)
    paths = write_thresholding_images(tmp_path, "t", np.array([[-1, 0, 5], [1, 1, 1]]), 2, 4)
    assert sorted(p.name for p in paths) == ["t_s0_l0.mem", "t_s0_l1.mem", "t_s1_l0.mem", "t_s1_l1.mem"]
    assert (tmp_path / "t_s1_l0.mem").read_text() == "f\n5\n"     # T[0][0] = -1, T[0][2] = 5


def _params(cfg, prefix="thr", flip=0):
    lanes, c, in_bits, signed, k, t_bits = cfg
    p = {"LANES": lanes, "C": c, "IN_BITS": in_bits, "SIGNED": signed, "OUT_BITS": k,
         "T_BITS": t_bits, "THRESH_PREFIX": prefix}
    if flip:
        p["OUT_FLIP"] = flip
    return p


def _flips(rng, c):
    """Random output flips; -G passes 32-bit integers, so wider C keeps its high channels plain."""
    f = rng.random(c) < 0.5
    f[31:] = False
    return f


def _id(cfg):
    lanes, c, in_bits, signed, k, t_bits = cfg
    return f"L{lanes}_C{c}_B{in_bits}{'s' if signed else 'u'}_k{k}_T{t_bits}"


def _run(cfg, tmp_path):
    lanes, c, in_bits, signed, k, t_bits = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    T, lo, hi = random_thresholds(rng, c, k, in_bits, signed, t_bits)
    write_thresholding_images(tmp_path, "thr", T, lanes, t_bits)
    flip = _flips(rng, c)

    def sc(name, n, p_gap, p_stall, seed):
        x = rng.integers(lo, hi + 1, size=(n, c))
        # half the values sit on a threshold of their channel or next to it: the ties
        pick = T[np.arange(c)[None, :], rng.integers(0, T.shape[1], size=(n, c))]
        near = (pick + rng.integers(-1, 2, size=(n, c))).clip(lo, hi)
        x = np.where(rng.random((n, c)) < 0.5, near, x)
        y = count_reference(x, T)
        y = np.where(flip, (1 << k) - 1 - y, y)
        return scenario(name, frames_to_beats(x, lanes, in_bits), frames_to_beats(y, lanes, k),
                        p_gap, p_stall, seed)

    pixels = max(8, 400 * lanes // c)
    case = {
        "scenarios": [
            sc("random", pixels, 0.3, 0.3, 1),
            sc("backpressure", pixels // 2, 0.0, 0.85, 2),
            sc("sparse_input", pixels // 2, 0.7, 0.0, 3),
        ],
        "full_rate": sc("full_rate", pixels, 0.0, 0.0, 4),
        "rate_checks": ["in_every_cycle", "out_every_cycle", "in_never_stalled"],
        "latency": k + 1,
    }
    res = run_case(rtl_sources("thresholding"), "thresholding", "bnnforge.sim.tb.tb_thresholding",
                   _params(cfg, flip=int(sum(1 << i for i in np.nonzero(flip)[0]))), tmp_path, case)
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "full_rate", "latency"}


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_thresholding(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW_CONFIGS, ids=[_id(c) for c in SLOW_CONFIGS])
def test_thresholding_slow(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.parametrize("cfg", [(2, 4, 8, 1, 2, 9), (1, 1, 1, 0, 1, 2), (16, 48, 12, 0, 8, 13),
                                 (3, 3, 2, 1, 3, 5), (12, 24, 4, 1, 1, 4)], ids=_id)
def test_thresholding_lint_clean(cfg):
    assert lint(rtl_sources("thresholding"), "thresholding", _params(cfg)) == []


@pytest.mark.parametrize("params,needle", [
    ({"C": 5, "LANES": 2}, "thresholding_error_C_not_a_positive_multiple_of_LANES"),
    ({"OUT_BITS": 9}, "thresholding_error_OUT_BITS_must_be_1_to_8"),
    ({"OUT_BITS": 0}, "thresholding_error_OUT_BITS_must_be_1_to_8"),
    ({"SIGNED": 2}, "thresholding_error_IN_BITS_T_BITS_positive_SIGNED_0_or_1"),
])
def test_thresholding_illegal_parameters_fail_elaboration(params, needle):
    with pytest.raises(LintError) as ei:
        lint(rtl_sources("thresholding"), "thresholding", params)
    assert needle in str(ei.value)


def test_thresholding_synthesizes_every_stage(tmp_path):
    """Yosys reads the per-stage images and the cross-stage references as
    Verilator does: no undeclared or undriven signals, and each of the k
    stages keeps its comparator (the thresholds are not folded away)."""
    from bnnforge.hw.synth import synthesize

    cfg = (2, 4, 6, 1, 3, 7)
    lanes, c, in_bits, signed, k, t_bits = cfg
    rng = np.random.default_rng(3)
    T, _, _ = random_thresholds(rng, c, k, in_bits, signed, t_bits)
    images = write_thresholding_images(tmp_path, "thr", T, lanes, t_bits)
    plist = ", ".join(f'.{n}("{v}")' if isinstance(v, str) else f".{n}({v})" for n, v in _params(cfg).items())
    wrapper = tmp_path / "wrap.v"
    wrapper.write_text(f"""
module wrap (input clk, input rst_n, input [{lanes * in_bits - 1}:0] in_data, input in_valid,
             output in_ready, output [{lanes * k - 1}:0] out_data, output out_valid, input out_ready);
  thresholding #({plist}) u (.clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid),
    .in_ready(in_ready), .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
    work = tmp_path / "synth"
    res = synthesize(rtl_sources("thresholding") + [wrapper], "wrap", workdir=work, data_files=images)
    log = res.log_path.read_text()
    suspect = ("implicitly declared", "out of bounds", "Setting all", "is used but has no driver")
    bad = [ln for ln in log.splitlines() if "Warning" in ln and any(s in ln for s in suspect)]
    assert bad == [], bad[:3]
    # per lane: k stages of x (in_bits) + decided bits, plus the output register
    assert res.total.ff >= lanes * (k * in_bits + k)
    assert res.total.lut_total >= lanes * k * 2
