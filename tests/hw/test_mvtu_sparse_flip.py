"""mvtu_sparse OUT_FLIP (per-output inversion, docs/hw_interfaces.md) against the golden
form finn_flows.sparse.apply_output_flip, in the 1-bit and k-bit output modes, with the
cocotb testbench of tests/hw/test_mvtu_sparse.py (random gaps, backpressure, throughput)."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from bnnforge.finn_flows.sparse import apply_output_flip, invert_thresholds
from bnnforge.sim.golden_ext import acc_bits_for_matrix, build_sparse_layer, decode_inputs, sparse_dot, sparse_outputs
from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.runner import run_test
from tests.hw.test_mvtu_sparse import PIPE_LATENCY, SOURCES, _inputs, _matrix, _thresholds

pytestmark = pytest.mark.rtl

# (MW, MH, PE, SIMD, input kind, INPUT_BITS, signed, weight kind, pattern, m, q, OUT_MODE, OUT_BITS)
CONFIGS = [
    (24, 12, 3, 4, "bipolar", 1, 0, "sparse01", "blocks", -1, 8, 0, 1),   # row constants, S, 1-bit out
    (12, 6, 3, 2, "int", 3, 1, "sparse01", "elem", 1, 4, 2, 2),           # 2-bit levels: NT - level
    (32, 16, 4, 8, "unipolar", 1, 0, "sparse01", "blocks", -1, 8, 2, 3),  # 3-bit levels
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{c[4]}_om{c[11]}k{c[12]}" for c in CONFIGS])
def test_out_flip(cfg, tmp_path):
    mw, mh, pe, simd, ik, ib, signed, wk, pat, m, q, out_mode, k = cfg
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    W = _matrix(rng, cfg)
    layer = build_sparse_layer(W, pe, simd, wk, m=m)
    acc_bits = acc_bits_for_matrix(W, ik, ib, bool(signed))
    nf, sf, steps = mh // pe, mw // simd, layer.steps
    xs = [_inputs(rng, n, mw, ik, ib, bool(signed)) for n in (40, 30, 30, 60)]
    accs = [sparse_dot(decode_inputs(x, ik), W) for x in xs]
    nt = (1 << k) - 1 if out_mode == 2 else 1
    T = _thresholds(rng, np.concatenate(accs), acc_bits, nt)
    if out_mode == 0:
        T = T[:, 0]
    flip = (rng.random(mh) < 0.5).astype(np.int64)
    flip[0], flip[-1] = 1, 0
    params = layer.write(tmp_path, ik, acc_bits, thresholds=T)
    params.update(INPUT_BITS=ib, INPUT_SIGNED=signed, OUT_MODE=out_mode, OUT_BITS=k,
                  OUT_FLIP=int("".join(str(b) for b in flip[::-1]), 2))
    ob = {0: 1, 2: k}[out_mode]

    def scenario(name, x, acc, p_gap, p_stall, seed):
        y = apply_output_flip(sparse_outputs(acc, out_mode, T), flip, nt)
        return {"name": name, "in_beats": frames_to_beats(x, simd, ib),
                "expected": frames_to_beats(y, pe, ob), "p_gap": p_gap, "p_stall": p_stall,
                "seed": seed, "max_cycles": 400 + 40 * len(x) * (max(sf, steps) + nf)}

    fold0_steps = next(i for i, (_, last, _) in enumerate(layer.schedule) if last) + 1
    case = {"PE": pe, "NF": nf, "SF": sf, "OB": ob, "steps": steps, "period": max(sf, steps),
            "latency": fold0_steps + PIPE_LATENCY,
            "scenarios": [scenario("random", xs[0], accs[0], 0.3, 0.3, 1),
                          scenario("heavy_backpressure", xs[1], accs[1], 0.0, 0.85, 2),
                          scenario("sparse_input", xs[2], accs[2], 0.8, 0.1, 3)],
            "throughput": scenario("throughput", xs[3], accs[3], 0.0, 0.0, 4)}
    (tmp_path / "case.json").write_text(json.dumps(case))
    res = run_test(SOURCES, "mvtu_sparse", "bnnforge.sim.tb.tb_mvtu_sparse", parameters=params,
                   workdir=tmp_path, extra_env={"TB_CASE": str(tmp_path / "case.json")})
    assert {t.name for t in res.tests} >= {"random_gaps_and_backpressure", "throughput"}


def test_inverted_thresholds_are_the_decreasing_channel():
    """invert_thresholds + apply_output_flip reproduce 'on iff -d >= T' (1-bit) and
    level(-d) (k-bit) on every d, with ascending thresholds."""
    d = np.arange(-20, 21)
    T1 = np.array([-21, -3, 0, 5, 21])
    flip = np.ones(5, dtype=bool)
    want = (-d[:, None] >= T1[None, :]).astype(np.int64)
    got = apply_output_flip((d[:, None] >= invert_thresholds(T1, flip)[None, :]).astype(np.int64), flip, 1)
    assert np.array_equal(got, want)
    Tk = np.array([[-7, -2, 2], [0, 0, 9], [-21, 3, 21]])
    inv = invert_thresholds(Tk, np.ones(3, dtype=bool))
    assert np.all(np.diff(inv, axis=1) >= 0)
    want = (-d[:, None, None] >= Tk[None]).sum(axis=2)
    got = apply_output_flip((d[:, None, None] >= inv[None]).sum(axis=2), np.ones(3), 3)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("out_mode", [0, 2])
def test_out_flip_synthesizes(tmp_path, out_mode):
    """Yosys reads the OUT_FLIP logic as Verilator does (no implicit/undriven signals) and
    keeps it: the netlist differs from the OUT_FLIP = 0 one (the flip bits, a function of
    the fold index, are registered with the thresholds and XORed into the outputs)."""
    from bnnforge.hw.synth import synthesize
    from bnnforge.sim.verilator_env import rtl_sources

    suspect = ("implicitly declared", "out of bounds", "Setting all", "is used but has no driver")
    mw, mh, pe, simd, k, acc = 32, 16, 4, 8, 2, 12
    rng = np.random.default_rng(7)
    layer = build_sparse_layer(-1 + 8 * (rng.random((mh, mw)) < 0.05), pe, simd, "sparse01")
    T = np.sort(rng.integers(-8, 8, (mh, 2 ** k - 1 if out_mode == 2 else 1)), axis=1)
    params = layer.write(tmp_path, "bipolar", acc, thresholds=T[:, 0] if out_mode == 0 else T)
    params.update(OUT_MODE=out_mode, OUT_BITS=k)
    ow = pe * {0: 1, 2: k}[out_mode]
    ffs = []
    for flip in (0, 0xa5c3):
        plist = ", ".join(f'.{n}("{v}")' if isinstance(v, str) else f".{n}({v})" for n, v in params.items())
        wrapper = tmp_path / f"wrap_{flip}.v"
        wrapper.write_text(f"""
module wrap (input clk, input rst_n, input [{simd - 1}:0] in_data, input in_valid, output in_ready,
             output [{ow - 1}:0] out_data, output out_valid, input out_ready);
  mvtu_sparse #({plist}, .OUT_FLIP({mh}'h{flip:x})) u (
    .clk(clk), .rst_n(rst_n), .in_data(in_data), .in_valid(in_valid), .in_ready(in_ready),
    .out_data(out_data), .out_valid(out_valid), .out_ready(out_ready));
endmodule
""")
        work = tmp_path / f"syn_{flip}"
        work.mkdir()
        for f in tmp_path.glob("*.mem"):
            (work / f.name).write_bytes(f.read_bytes())
        res = synthesize(rtl_sources("popcount", "popcount_compressor", "adder_tree", "sign_resize", "pipe_delay", "mvtu_sparse") + [wrapper], "wrap",
                         workdir=work)
        bad = [ln for ln in res.log_path.read_text().splitlines() if "Warning" in ln and any(s in ln for s in suspect)]
        assert bad == [], bad[:3]
        ffs.append((res.total.ff, res.total.lut))
    assert ffs[1] != ffs[0], ffs
