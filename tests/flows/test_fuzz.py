"""Differential fuzzing (bnnforge/fuzz.py) on fixed seeds, saved regressions, and proof that
the harness reports corrupted hardware."""
import json
from pathlib import Path

import numpy as np
import pytest

from bnnforge.hw.hwgraph import initializer, set_initializer
from bnnforge.fuzz import (FuzzCase, Mismatch, build_artifacts, build_torch_model, case_images, check_golden,
                      check_reproducer, check_rtl, random_case, run_case, save_reproducer, torch_logits,
                      _drop_sim_build, shrink_and_save)
from bnnforge.sim.golden import FAULT_ENV, injected_fault

REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz_regressions"
GOLDEN_SEEDS = list(range(100, 120))
RTL_SEEDS = [7, 12, 21]


def test_random_case_is_deterministic_and_covers_corners():
    cases = [random_case(s) for s in range(300)]
    assert [c.to_json() for c in cases[:20]] == [random_case(s).to_json() for s in range(20)]
    assert FuzzCase.from_json(json.loads(json.dumps(cases[5].to_json()))) == cases[5]
    corners = {"pe1": 0, "pe_max": 0, "simd1": 0, "simd_max": 0}
    seen = {"act": set(), "input_quant": set(), "weight_scaling": set(), "label_select": set(),
            "edits": set(), "n_hidden": set()}
    for c in cases:
        w = c.widths
        assert 8 <= w[0] <= 96 and all(2 <= h <= 64 for h in c.hidden) and 2 <= c.num_classes <= 12
        assert len(c.folding) == len(w) - 1
        for i, f in enumerate(c.folding.values()):
            mw, mh = w[i], w[i + 1]
            assert mh % f["PE"] == 0 and mw % f["SIMD"] == 0
            corners["pe1"] += f["PE"] == 1
            corners["pe_max"] += f["PE"] == mh
            corners["simd1"] += f["SIMD"] == 1
            corners["simd_max"] += f["SIMD"] == mw
        seen["act"].add(c.act)
        seen["input_quant"].add(c.input_quant)
        seen["weight_scaling"].add(c.weight_scaling)
        seen["label_select"].add(c.label_select)
        seen["n_hidden"].add(len(c.hidden))
        seen["edits"].update(e["kind"] for e in c.edits)
    assert all(v > 20 for v in corners.values()), corners
    assert seen["act"] == {"bipolar", "unipolar"} and seen["input_quant"] == {"binary", "uint4"}
    assert seen["weight_scaling"] == {"none", "per_channel"} and seen["label_select"] == {True, False}
    assert seen["n_hidden"] == {1, 2, 3, 4}
    assert seen["edits"] == {"neg_gamma", "zero_gamma", "always", "const_row", "zero_weights"}


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_fuzz_golden_equals_torch(tmp_path, seed):
    r = run_case(random_case(seed), tmp_path, rtl=False, reproducer_dir=tmp_path / "repro")
    assert r["ok"], (r["kind"], r["reason"], r.get("traceback", ""))


@pytest.mark.rtl
@pytest.mark.parametrize("seed", RTL_SEEDS)
def test_fuzz_rtl_bit_exact(tmp_path, seed):
    r = run_case(random_case(seed), tmp_path, rtl=True, reproducer_dir=tmp_path / "repro")
    assert r["ok"], (r["kind"], r["reason"], r.get("traceback", ""))
    assert r["rtl_frames"] >= 2


def _regressions():
    found = sorted(p.parent for p in REGRESSIONS.glob("*/case.json")) if REGRESSIONS.is_dir() else []
    # an empty store must fail, not silently run nothing
    return found or [pytest.param(None, id="EMPTY_STORE")]


@pytest.mark.rtl
@pytest.mark.parametrize("repro", _regressions(), ids=lambda p: getattr(p, "name", "EMPTY_STORE"))
def test_saved_fuzz_regressions(tmp_path, monkeypatch, repro):
    assert repro is not None, f"the fuzz regression store {REGRESSIONS} holds no reproducer"
    info = json.loads((repro / "case.json").read_text())
    fault = info.get("injected_fault")
    monkeypatch.delenv(FAULT_ENV, raising=False)
    if fault:
        # the saved case was shrunk from a failure of this test-only fault: with the
        # fault on it must still be detected, as the same kind of mismatch
        monkeypatch.setenv(FAULT_ENV, fault)
        r = check_reproducer(repro, tmp_path / "fault_on", rtl=False)
        assert not r["ok"] and r["kind"] == info["kind"], r
        monkeypatch.delenv(FAULT_ENV)
    r = check_reproducer(repro, tmp_path / "fault_off", force_rtl=True)
    assert r["ok"], (r["kind"], r["reason"])
    assert r["rtl_frames"] >= 1


def test_regression_store_holds_the_shrunk_injected_fault():
    repros = [p.parent for p in REGRESSIONS.glob("*/case.json")]
    shrunk = [json.loads((d / "case.json").read_text()) for d in repros]
    faults = [i for i in shrunk if i.get("injected_fault")]
    assert faults, "no shrunk reproducer of an injected fault in the store"
    for info in faults:
        case = info["case"]
        if case.get("generator") == "residual":
            # stem, two units per block and a unit per downsampling shortcut, classifier
            blocks = case["net"]["blocks"]
            n_layers = 2 + 2 * len(blocks) + blocks.count("down")
        else:
            n_layers = len(case["layers"] if case.get("generator") == "graph" else case["hidden"]) + 1
        assert n_layers <= 2, info["summary"]
        assert len(info["case"]["image_rows"]) <= 8, info["summary"]


@pytest.mark.slow
def test_shrinking_reduces_an_injected_fault(tmp_path, monkeypatch):
    """Fault on: a fixed fuzz case fails, shrinking reduces it to <= 2 layers and <= 8
    inputs, the saved reproducer fails with the fault on and passes with it off."""
    monkeypatch.setenv(FAULT_ENV, "mvtu_threshold_strict")
    case = _small_case(hidden=(12, 8, 6), folding={"MVTU_0": {"PE": 3, "SIMD": 6}, "MVTU_1": {"PE": 2, "SIMD": 12},
                                                   "MVTU_2": {"PE": 6, "SIMD": 4}, "MVTU_3": {"PE": 5, "SIMD": 2}})
    r = run_case(case, tmp_path / "orig", rtl=False)
    assert not r["ok"] and r["kind"] == "streamlined_vs_hw", r
    d = shrink_and_save(case, r, tmp_path / "store", tmp_path / "work", rtl=False,
                        injected_fault="mvtu_threshold_strict")
    info = json.loads((d / "case.json").read_text())
    small = FuzzCase.from_json(info["case"])
    assert len(small.widths) - 1 <= 2 and small.n_images <= 8, small.summary()
    assert len(np.load(d / "inputs.npy")) == small.n_images
    assert not check_reproducer(d, tmp_path / "on", rtl=False)["ok"]
    monkeypatch.delenv(FAULT_ENV)
    assert check_reproducer(d, tmp_path / "off", rtl=False)["ok"]
    assert run_case(case, tmp_path / "orig_off", rtl=False)["ok"]


def test_injected_fault_is_off_by_default():
    import os

    assert os.environ.get(FAULT_ENV) is None and injected_fault() is None


# --- the harness can fail ---------------------------------------------------------

def _small_case(**kw):
    base = dict(seed=4242, act="bipolar", input_quant="binary", input_shape=(1, 4, 6), hidden=(12, 8),
                num_classes=5, weight_scaling="none", label_select=False,
                folding={"MVTU_0": {"PE": 3, "SIMD": 6}, "MVTU_1": {"PE": 2, "SIMD": 12},
                         "MVTU_2": {"PE": 5, "SIMD": 2}}, fifo_depth=2, p_gap=0.2, p_stall=0.2)
    base.update(kw)
    return FuzzCase(**base)


def _exported(tmp_path, case):
    from bnnforge.models.export import export_qonnx

    model = build_torch_model(case)
    images = case_images(case)
    logits = torch_logits(model, images)
    path = export_qonnx(model, tmp_path / "model.onnx", (1,) + tuple(case.input_shape))
    return path, images, logits


@pytest.mark.parametrize("act", ["bipolar", "unipolar"])
def test_corrupted_threshold_is_reported(tmp_path, act):
    case = _small_case(act=act)
    path, images, logits = _exported(tmp_path, case)
    streamlined, hw, _ = build_artifacts(path, case.folding, tmp_path / "build", False, 2, rtl=False)
    g = check_golden(streamlined, hw, images, logits)          # intact: passes
    # one threshold of the last hidden layer moved so that its channel is always on
    from bnnforge.sim.golden import execute

    _, env = execute(hw, g["q"], return_all=True)
    node = [n for n in hw.graph.node if n.op_type == "MVTU"][1]
    bits = env[node.output[0]]
    ch = int(np.nonzero((bits.min(0) == 0) & (bits.max(0) == 1))[0][0])   # a channel that toggles
    t = initializer(hw, node.input[2]).copy()
    t[ch] = -10_000
    set_initializer(hw, node.input[2], t)
    with pytest.raises(Mismatch) as e:
        check_golden(streamlined, hw, images, logits)
    assert e.value.kind == "streamlined_vs_hw"
    # and against torch alone (the streamlined graph corrupted the same way)
    th = next(n for n in streamlined.graph.node if n.op_type == "Threshold" and n.name.endswith("_1"))
    ts = initializer(streamlined, th.input[1]).copy()
    ts[ch] = -10_000
    set_initializer(streamlined, th.input[1], ts)
    with pytest.raises(Mismatch) as e:
        check_golden(streamlined, hw, images, logits)
    assert e.value.kind in ("golden_vs_torch_argmax", "acc_vs_logits")


def test_wrong_logits_in_reproducer_are_reported(tmp_path):
    case = _small_case(label_select=True)
    path, images, logits = _exported(tmp_path, case)
    res = {"kind": "selftest", "reason": "self test", "rtl": False}
    good = save_reproducer(case, tmp_path / "repro_good", res, path, images, logits)
    assert check_reproducer(good, tmp_path / "w1", rtl=False)["ok"]
    bad = save_reproducer(case, tmp_path / "repro_bad", res, path, images, logits[:, ::-1].copy())
    r = check_reproducer(bad, tmp_path / "w2", rtl=False)
    assert not r["ok"] and r["kind"] in ("golden_vs_torch_argmax", "acc_vs_logits"), r


@pytest.mark.rtl
def test_corrupted_weight_bit_in_rtl_memory_is_reported(tmp_path):
    case = _small_case()
    path, images, logits = _exported(tmp_path, case)
    streamlined, hw, bdir = build_artifacts(path, case.folding, tmp_path / "build", False, 2, rtl=True)
    g = check_golden(streamlined, hw, images, logits)
    rtl = bdir / "rtl"
    q, golden = g["q"][:8], g["golden"][:8]
    try:
        check_rtl(rtl, q, golden, 0.2, 0.2, seed=1)                    # intact: passes
        mem = rtl / "layer2_weights.mem"                                # last layer: accumulators out
        lines = mem.read_text().split()
        lines[0] = format(int(lines[0], 16) ^ 1, f"0{len(lines[0])}x")  # output 0, input 0
        mem.write_text("\n".join(lines) + "\n")
        with pytest.raises(Mismatch) as e:
            check_rtl(rtl, q, golden, 0.2, 0.2, seed=1)
        assert e.value.kind == "rtl_mismatch"
    finally:
        _drop_sim_build(rtl)
