"""Sparse binarization methods through the whole flow into mvtu_sparse:

  binary_domain  W = scale * (m + q*B), B in {0,1}   -> SparseMatMul / MVTUSparse "sparse01"
  ftbnn groups   block-diagonal {-1,0,+1} weights     -> SparseMatMul / MVTUSparse "pm1_blocks"

tidy_up -> streamline -> convert_to_hw -> apply_folding -> estimates -> codegen; golden
argmax == torch, RTL (Verilator, bulk harness) bit-exact against the golden model,
measured cycles per frame of the sparse stage against max(SF, STEPS), and a briefly
trained binary_domain model whose stored weight bits are fewer than the dense
baseline's of the same topology.
"""
import json

import numpy as np
import onnx
import pytest
import torch

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.hw.hwgraph import attr_str, get_attrs, initializer
from bnnforge.hw.memfiles_sparse import integer_matrix
from bnnforge.models.methods import build_method_model
from bnnforge.models.methods.binary_domain import BinaryDomainLinear
from bnnforge.models.methods.export import export_method_qonnx, recover_binary_domain
from bnnforge.models.topologies import randomize_batchnorm
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, build_and_check_rtl, build_method as _build, torch_outputs
from tests.models.methods.helpers import images, random_ftbnn_model

HIDDEN = (64, 32)
# folding of each random-init network: every PE, SIMD > 1, the sparse stage the bottleneck
FOLDINGS = {
    "binary_domain": {"MVTUSparse_0": {"PE": 4, "SIMD": 4}, "MVTUSparse_1": {"PE": 2, "SIMD": 8},
                      "MVTU_2": {"PE": 2, "SIMD": 8}},
    "ftbnn": {"MVTU_0": {"PE": 16, "SIMD": 8}, "MVTUSparse_1": {"PE": 2, "SIMD": 4},
              "MVTU_2": {"PE": 2, "SIMD": 8}},
}


@torch.no_grad()
def sparse_bd_model(seed=0, hidden=HIDDEN, ratios=(0.0, -0.3), blocks=((4, 4), (2, 8)), empty=0.5):
    """Random binary-domain MLP with asymmetric domains (ratio 0: ints {0, 8}; -0.3:
    {-2, 6}) and a block-sparse B: in a random `empty` fraction of the PE x SIMD blocks
    (and one whole neuron fold) of each layer every latent weight is <= 0 (B = 0), in
    the others B is random. BatchNorm random afterwards (negative gammas included)."""
    torch.manual_seed(seed)
    m = build_method_model("binary_domain", hidden=hidden)
    g = torch.Generator().manual_seed(seed)
    layers = [l for l in m.modules() if isinstance(l, BinaryDomainLinear)]
    for l, r, (pe, simd) in zip(layers, ratios, blocks):
        l.ratio.fill_(r)
        nf, sf = l.out_features // pe, l.in_features // simd
        keep = torch.rand((nf, sf), generator=g) >= empty
        keep[nf // 2, :] = False                       # a neuron fold with no stored block
        mask = keep.repeat_interleave(pe, 0).repeat_interleave(simd, 1)
        w = l.latent_weight
        w.copy_(torch.where(mask, w, -w.abs() - 1e-3))
    randomize_batchnorm(m, g)
    return m.eval()


def grouped_ftbnn_model(seed=0, hidden=HIDDEN, groups=4):
    """Random FTBNN MLP with a grouped hidden layer (tests.models.methods.helpers)."""
    return random_ftbnn_model(seed, hidden=hidden, groups=groups)


MODELS = {"binary_domain": sparse_bd_model, "ftbnn": grouped_ftbnn_model}


def _nodes(model, op):
    return [n for n in model.graph.node if n.op_type == op]


@pytest.mark.parametrize("method", ["binary_domain", "ftbnn"])
def test_sparse_golden_equals_torch_on_200_inputs(tmp_path, method):
    m = MODELS[method](seed=3)
    path, streamlined, hw, bdir = _build(m, tmp_path, FOLDINGS[method])
    x = images(200, seed=7)
    t = torch_outputs(m, x).argmax(1)
    assert len(np.unique(t)) > 2, "degenerate network"
    q = quantize_inputs(streamlined, x)
    assert np.array_equal(execute(streamlined, q), t)
    assert np.array_equal(execute(hw, q), t)

    sparse = _nodes(streamlined, "SparseMatMul")
    hw_sparse = _nodes(hw, "MVTUSparse")
    if method == "binary_domain":
        assert [n.name for n in hw_sparse] == ["MVTUSparse_0", "MVTUSparse_1"]
        assert [n.name for n in _nodes(hw, "MVTU")] == ["MVTU_2"]
        # the integer matrices are exactly the exported ones up to their gcd
        rec = recover_binary_domain(str(path))
        for node, r in zip(sparse, rec):
            a = get_attrs(node)
            assert attr_str(a["weight_kind"]) == "sparse01"
            w = integer_matrix("sparse01", a["m"], a["q"], initializer(streamlined, node.input[1]))
            w_exp = r["q"] * r["B"].astype(np.int64) + r["m"]
            k = w_exp[w != 0][0] // w[w != 0][0]
            assert k > 0 and np.array_equal(k * w, w_exp)
        assert [len(n.input) for n in _nodes(hw, "MVTUSparse")] == [4, 4]  # output flips present
    else:
        assert [n.name for n in hw_sparse] == ["MVTUSparse_1"]
        a = get_attrs(sparse[0])
        assert attr_str(a["weight_kind"]) == "pm1_blocks"
        w = initializer(streamlined, sparse[0].input[1])
        assert set(np.unique(w).tolist()) == {-1, 0, 1}
        blk = w.reshape(4, w.shape[0] // 4, 4, w.shape[1] // 4)
        for gi in range(4):
            for gj in range(4):
                assert np.all(blk[gi, :, gj, :] != 0) if gi == gj else np.all(blk[gi, :, gj, :] == 0)

    est = json.loads((bdir / "report" / "estimates.json").read_text())
    for l in est["layers"]:
        if l["kind"] == "mvtu_sparse":
            node = next(n for n in hw_sparse if n.name == l["name"])
            a = get_attrs(node)
            sf, nf = a["MW"] // a["SIMD"], a["MH"] // a["PE"]
            assert l["weight_bits"] == a["NNZ"] * a["PE"] * a["SIMD"] < l["dense_weight_bits"] == a["MW"] * a["MH"]
            assert l["cycles"] == max(sf, a["STEPS"]) < l["dense_cycles"] == nf * sf


@pytest.mark.rtl
@pytest.mark.parametrize("method", ["binary_domain", "ftbnn"])
def test_sparse_rtl_bit_exact_and_cycles(tmp_path, method):
    m = MODELS[method](seed=4)
    res, man, bdir = build_and_check_rtl(m, tmp_path, FOLDINGS[method], images(60, seed=8))
    from bnnforge.sim.runner import lint
    rtl = bdir / "rtl"
    assert lint([rtl / f for f in man["files"]], man["top"]) == []  # verilator --lint-only -Wall
    sparse = [s for s in man["stages"] if s["kind"] == "mvtu_sparse"]
    assert sparse and all(s["params"]["PE"] > 1 and s["params"]["SIMD"] > 1 for s in man["stages"])
    for s in sparse:
        st = next(l for l in man["layers"] if l["source"] == s["source"])["stats"]
        assert s["cycles"] == st["cycles_per_frame"] == max(s["params"]["MW"] // s["params"]["SIMD"], st["steps"])
        assert st["nonzero_blocks"] < st["total_blocks"] and st["cycles_per_frame"] < st["dense_cycles_per_frame"]
    if method == "binary_domain":
        assert any("OUT_FLIP" in s["params"] for s in sparse)  # negative BN scales: inverted outputs
    # the folding makes a sparse stage the bottleneck: the pipeline runs at its max(SF, STEPS)
    bottleneck = max(man["stages"], key=lambda s: s["cycles"])
    assert bottleneck["kind"] == "mvtu_sparse"
    assert res["cycles_per_frame_ideal"] == bottleneck["cycles"]
    assert abs(res["cycles_per_frame_measured"] - bottleneck["cycles"]) <= 0.02 * bottleneck["cycles"], res
    for s in sparse:
        st = next(l for l in man["layers"] if l["source"] == s["source"])["stats"]
        print(f"{method} {s['source']}: {st['nonzero_blocks']}/{st['total_blocks']} blocks stored, weight bits "
              f"{st['stored_bits']} vs dense {st['dense_bits']} (+{st['schedule_bits']} schedule), cycles/frame "
              f"{st['cycles_per_frame']} vs dense {st['dense_cycles_per_frame']}")
    print(f"{method}: RTL {res['frames']} frames, {res['rtl_mismatches']} mismatches, "
          f"{res['cycles_per_frame_measured']} cycles/frame measured (ideal {res['cycles_per_frame_ideal']})")


@pytest.mark.rtl
def test_trained_binary_domain_fewer_weight_bits_and_rtl_exact_on_digits_test(tmp_path):
    from bnnforge.models.data import load_dataset
    from bnnforge.models.methods import train_method
    from bnnforge.sim.bulk import run_network_bulk

    data = load_dataset("digits")
    hidden = (64, 64)
    r = train_method("binary_domain", data, tmp_path / "train", 2, 1, hidden=hidden,
                     params={"ec": 0.05, "gamma": 0.65}, progress=False)
    m = r["model"].eval()
    assert r["test_acc"] > 0.5
    p = r["method_stats"]["ones_fraction"]
    assert p < 0.4  # the regularizer made B sparse
    folding = {"MVTUSparse_0": {"PE": 2, "SIMD": 2}, "MVTUSparse_1": {"PE": 2, "SIMD": 2},
               "MVTU_2": {"PE": 2, "SIMD": 2}}
    _, streamlined, hw, bdir = _build(m, tmp_path / "sparse", folding, steps=HW_STEPS + ["codegen"])
    x = np.asarray(data.test.x, dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    assert np.array_equal(golden, torch_outputs(m, x).argmax(1))
    res = run_network_bulk(bdir / "rtl", q, golden, seed=3)
    assert res["frames"] == len(x) == 360 and res["rtl_mismatches"] == 0 and res["tlast_correct"]
    assert np.array_equal(np.array(res["labels_rtl"]), golden)

    # dense binary baseline of the same topology and folding
    torch.manual_seed(0)
    dense = build_method_model("bipolar", hidden=hidden).eval()
    dense_fold = {"MVTU_0": folding["MVTUSparse_0"], "MVTU_1": folding["MVTUSparse_1"], "MVTU_2": folding["MVTU_2"]}
    _, _, _, ddir = _build(dense, tmp_path / "dense", dense_fold)
    est = json.loads((bdir / "report" / "estimates.json").read_text())
    dest = json.loads((ddir / "report" / "estimates.json").read_text())
    assert [l["name"] for l in est["layers"]] == ["MVTUSparse_0", "MVTUSparse_1", "MVTU_2"]
    assert est["weight_bits_total"] < dest["weight_bits_total"]
    for l, d in zip(est["layers"][:2], dest["layers"][:2]):
        assert l["weight_bits"] < d["weight_bits"] == l["dense_weight_bits"]
        assert l["cycles"] < d["cycles"]
    print("trained binary_domain: ones fraction %.3f, test acc %.3f, stored blocks %s; weight bits sparse %d "
          "(+ schedule %d) vs dense %d; cycles/frame %d vs %d; RTL %d frames, %d mismatches, %.1f cycles/frame "
          "measured" % (
              p, r["test_acc"], [f"{l['nonzero_blocks']}/{l['total_blocks']}" for l in est["layers"][:2]],
              est["weight_bits_total"], sum(l.get("schedule_bits", 0) for l in est["layers"]),
              dest["weight_bits_total"], est["cycles_per_frame_ideal"], dest["cycles_per_frame_ideal"],
              res["frames"], res["rtl_mismatches"], res["cycles_per_frame_measured"]))


def test_symmetric_binary_domain_still_takes_the_sparse_unit(tmp_path):
    """The closed-form init gives m = -q/2 ({-4, 4} * c/q): numerically {-1,+1} weights
    with a scale, still compiled as sparse01 (W = m' + q'*B over {-1,+1}) so that a sparse
    B pays off; exact either way."""
    torch.manual_seed(2)
    m = build_method_model("binary_domain", hidden=HIDDEN)
    randomize_batchnorm(m, torch.Generator().manual_seed(2))
    m.eval()
    ints = [l.integer_weight()[0] for l in m.modules() if isinstance(l, BinaryDomainLinear)]
    assert all(sorted(torch.unique(w).tolist()) == [-4, 4] for w in ints)
    _, streamlined, hw, _ = _build(m, tmp_path, None)
    for node in _nodes(streamlined, "SparseMatMul"):
        a = get_attrs(node)
        w = integer_matrix("sparse01", a["m"], a["q"], initializer(streamlined, node.input[1]))
        assert attr_str(a["weight_kind"]) == "sparse01" and set(np.unique(w).tolist()) == {-1, 1}
    assert [n.name for n in _nodes(hw, "MVTUSparse")] == ["MVTUSparse_0", "MVTUSparse_1"]
    x = images(200, seed=9)
    t = torch_outputs(m, x).argmax(1)
    q = quantize_inputs(streamlined, x)
    assert np.array_equal(execute(hw, q), t) and len(np.unique(t)) > 2


def test_grouped_layer_straddling_a_block_refused_naming_the_node(tmp_path):
    m = grouped_ftbnn_model(seed=5)
    # groups of 8 rows x 16 columns: PE 16 mixes two groups in one block
    bad = {"MVTUSparse_1": {"PE": 16, "SIMD": 4}}
    with pytest.raises(BnnforgeError) as e:
        _build(m, tmp_path, bad)
    msg = str(e.value)
    assert "\n" not in msg and "node 'MVTUSparse_1'" in msg and "mixes 0 and +-1" in msg, msg
    assert not (tmp_path / "build").exists()


def test_unrepresentable_quantized_weights_refused_naming_the_node(tmp_path):
    """A 3-level non-ternary integer weight grid is neither binary, binary domain nor grouped."""
    m = sparse_bd_model(seed=6)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    quant = next(n for n in model.graph.node if n.op_type == "Quant" and
                 any(t.name == n.input[0] and len(t.dims) == 2 for t in model.graph.initializer))
    t = next(t for t in model.graph.initializer if t.name == quant.input[0])
    s = float(onnx.numpy_helper.to_array(next(x for x in model.graph.initializer if x.name == quant.input[1])))
    w = onnx.numpy_helper.to_array(t).copy()
    w.flat[:3] = np.float32(s) * np.array([3, -5, 1], dtype=np.float32)  # extra levels
    t.CopyFrom(onnx.numpy_helper.from_array(w, t.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    cfg = load_config(None, model=str(bad), output_dir=str(tmp_path / "b"), steps=HW_STEPS)
    with pytest.raises(BnnforgeError) as e:
        build(cfg, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("node 'MatMul_0'") and "weights are not binary" in msg, msg
    assert not (tmp_path / "b").exists()


@pytest.mark.rtl
@pytest.mark.parametrize("method", ["binary_domain", "ftbnn"])
def test_automatic_folding_folds_sparse_layers_and_meets_the_target(tmp_path, method):
    """target_cycles_per_frame sizes MVTUSparse layers too (their schedule rebuilt per
    candidate folding); the RTL then runs at or under the target, bit-exact."""
    from bnnforge.sim.bulk import run_network_bulk

    m = MODELS[method](seed=4)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = export_method_qonnx(m, tmp_path / "model.onnx")
    target = 48
    cfg = load_config(None, model=str(path), output_dir=str(tmp_path / "build"), target_cycles_per_frame=target,
                      steps=["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization",
                             "apply_folding", "estimates", "codegen"])
    build(cfg, progress=False)
    b = tmp_path / "build"
    folding = json.loads((b / "auto_folding.json").read_text())
    sparse = [k for k in folding if k.startswith("MVTUSparse_")]
    assert sparse and all(folding[k]["PE"] * folding[k]["SIMD"] > 1 for k in sparse)
    est = json.loads((b / "report" / "estimates.json").read_text())
    assert est["cycles_per_frame_ideal"] <= target
    hw = onnx.load(str(b / "final_model.onnx"))
    x = images(40, seed=3)
    q = quantize_inputs(hw, x)
    golden = execute(hw, q)
    assert np.array_equal(golden, torch_outputs(m, x).argmax(1))
    res = run_network_bulk(b / "rtl", q, golden, seed=2)
    assert res["rtl_mismatches"] == 0 and res["output_beats"] == 40
    assert res["cycles_per_frame_measured"] <= target * 1.02
