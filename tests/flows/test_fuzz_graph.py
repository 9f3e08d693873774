"""The graph fuzzer (bnnforge/fuzz_graph.py): every operator kind drawn, fixed seeds
through the whole flow (golden in CI over many seeds, RTL beat for beat over four seeds
that together cover every kind; more in the slow set), shrinking of an injected fault
in a convolutional case."""
import collections
import json

import numpy as np
import pytest

from bnnforge.fuzz import check_reproducer
from bnnforge.fuzz_graph import (GraphCase, coverage, graph_shrink_candidates, layer_geometry, random_graph_case,
                                 run_graph_case, shrink_and_save_graph)
from bnnforge.sim.golden import FAULT_ENV

ALL_KINDS = {"act_bipolar", "act_int", "act_uint", "act_unipolar", "conv", "conv_dense", "conv_kbit", "conv_pm1_blocks",
             "conv_sparse01", "fc_dense", "fc_kbit", "fc_pm1_blocks", "fc_sparse01", "input_bipolar", "input_int8",
             "input_uint4", "input_unipolar", "maxpool", "out_accumulators", "out_label_select"}
CORNERS = ({f"kernel_{k}" for k in range(1, 6)} | {f"stride_{s}" for s in (1, 2, 3)} | {f"pad_{p}" for p in (0, 1, 2)}
           | {"pool_2", "pool_3", "fold_pe1_simd1", "fold_full", "weight_scale_per_channel", "stalls"}
           | {f"act_uint{k}" for k in (2, 3, 4)} | {f"act_int{k}{n}" for k in (2, 3, 4) for n in ("", "_narrow")}
           | {f"weight_bits_{b}{n}" for b in (2, 3) for n in ("", "_narrow")} | {"weight_bits_4_narrow"}
           | {f"edit_{e}" for e in ("neg_gamma", "zero_gamma", "always", "const_row", "zero_weights")})
# four seeds that together cover every kind in ALL_KINDS (one per input kind), cheap to simulate
RTL_SEEDS = [1036, 1371, 1034, 1046]
GOLDEN_SEEDS = list(range(200, 208))
SLOW_RTL_SEEDS = list(range(3000, 3016))


def _check_folding(case: GraphCase):
    geom = layer_geometry(case)
    assert geom is not None, case.summary()
    assert [g["name"] for g in geom] == list(case.folding), case.summary()
    for g in geom:
        f = case.folding[g["name"]]
        assert g["pe_of"] % f["PE"] == 0 and g["simd_of"] % f["SIMD"] == 0, (g, f)
        assert g["MH"] % g["pe_of"] == 0 and g["MW"] % g["simd_of"] == 0


def test_random_graph_cases_are_deterministic_valid_and_cover_every_kind():
    cases = [random_graph_case(s) for s in range(400)]
    assert [c.to_json() for c in cases[:20]] == [random_graph_case(s).to_json() for s in range(20)]
    assert GraphCase.from_json(json.loads(json.dumps(cases[7].to_json()))) == cases[7]
    kinds, corners = collections.Counter(), collections.Counter()
    for c in cases:
        _check_folding(c)
        cov = coverage(c)
        kinds.update(cov["kinds"])
        corners.update(cov["corners"])
    assert set(kinds) == ALL_KINDS, set(kinds) ^ ALL_KINDS
    # 400 networks give every operator kind at least 30 times (>= 40 in 500)
    assert min(kinds.values()) >= 30, kinds
    assert CORNERS <= set(corners), CORNERS - set(corners)


def test_rtl_seeds_cover_every_kind():
    covered = set().union(*(coverage(random_graph_case(s))["kinds"] for s in RTL_SEEDS))
    assert covered == ALL_KINDS, ALL_KINDS - covered


def test_shrink_candidates_are_smaller_valid_networks():
    for s in range(0, 60, 3):
        case = random_graph_case(s)
        n = 0
        for name, cand in graph_shrink_candidates(case):
            if cand is None:
                continue
            n += 1
            _check_folding(cand)
            for e in cand.edits:
                assert e["layer"] < len(cand.layers)
                assert all(ch < cand.layers[e["layer"]]["out"] for ch in e.get("channels", e.get("rows", [])))
        assert n >= 3, case.summary()


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_graph_fuzz_golden_equals_torch(tmp_path, seed):
    r = run_graph_case(random_graph_case(seed), tmp_path, rtl=False, reproducer_dir=tmp_path / "repro")
    assert r["ok"], (r["kind"], r["reason"], r.get("traceback", ""))


@pytest.mark.rtl
@pytest.mark.parametrize("seed", RTL_SEEDS)
def test_graph_fuzz_rtl_bit_exact(tmp_path, seed):
    r = run_graph_case(random_graph_case(seed), tmp_path, rtl=True, reproducer_dir=tmp_path / "repro")
    assert r["ok"], (r["kind"], r["reason"], r.get("traceback", ""))
    assert r["rtl_frames"] == 64


@pytest.mark.slow
@pytest.mark.rtl
@pytest.mark.parametrize("seed", SLOW_RTL_SEEDS)
def test_graph_fuzz_rtl_bit_exact_more_seeds(tmp_path, seed):
    r = run_graph_case(random_graph_case(seed), tmp_path, rtl=True, reproducer_dir=tmp_path / "repro")
    assert r["ok"], (r["kind"], r["reason"], r.get("traceback", ""))


def _conv_case():
    """Two convs (one padded and pooled, one strided binary-domain), a dense and a grouped
    FC, the classifier; 1-bit threshold activations, so the injected threshold fault bites."""
    layers = [
        {"op": "conv", "out": 4, "k": 3, "s": 1, "pad": 1, "weights": "dense", "scaling": "none",
         "act": "unipolar", "pool": 2},
        {"op": "conv", "out": 6, "k": 2, "s": 2, "pad": 0, "weights": "binary_domain", "ratio": -0.3,
         "act": "bipolar", "pool": 0},
        {"op": "fc", "out": 12, "weights": "dense", "scaling": "per_channel", "act": "unipolar"},
        {"op": "fc", "out": 6, "weights": "grouped", "groups": 3, "act": "bipolar"},
    ]
    case = GraphCase(seed=77, input_quant="uint4", input_shape=(2, 8, 8), layers=layers, num_classes=5,
                     label_select=True, folding={}, fifo_depth=3, p_gap=0.2, p_stall=0.3)
    geom = layer_geometry(case)
    assert geom is not None
    case.folding = {g["name"]: {"PE": g["pe_of"] // 2 if g["pe_of"] % 2 == 0 else 1,
                                "SIMD": 2 if g["simd_of"] % 2 == 0 else 1} for g in geom}
    return case


@pytest.mark.slow
def test_shrinking_reduces_an_injected_fault_in_a_conv_network(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "mvtu_threshold_strict")
    case = _conv_case()
    r = run_graph_case(case, tmp_path / "orig", rtl=False)
    assert not r["ok"] and r["kind"] == "streamlined_vs_hw", r
    d = shrink_and_save_graph(case, r, tmp_path / "store", tmp_path / "work", rtl=False,
                              injected_fault="mvtu_threshold_strict")
    info = json.loads((d / "case.json").read_text())
    small = GraphCase.from_json(info["case"])
    assert small.n_layers <= 2 and small.n_images <= 8, small.summary()
    assert len(np.load(d / "inputs.npy")) == small.n_images
    assert not check_reproducer(d, tmp_path / "on", rtl=False)["ok"]
    monkeypatch.delenv(FAULT_ENV)
    assert check_reproducer(d, tmp_path / "off", rtl=False)["ok"]
    assert run_graph_case(case, tmp_path / "orig_off", rtl=False)["ok"]
