"""The bad-input corpus: every case goes through the `bnnforge` command line and must
give exit status 2, exactly one line on stderr naming the offending file / node /
field, and no output left behind (no file, no half-written build directory)."""
import json
import struct

import numpy as np
import onnx
import pytest

from bnnforge.cli import main
from bnnforge.models.export import export_qonnx
from tests.flows.helpers import random_model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("assets")
    m = random_model("tfc", "unipolar", seed=3)
    good = export_qonnx(m, d / "tfc.onnx", (1, 1, 28, 28))
    raw = good.read_bytes()
    (d / "truncated.onnx").write_bytes(raw[: len(raw) // 2])
    (d / "empty.onnx").write_bytes(b"")
    (d / "garbage.onnx").write_bytes(b"\x08\x07not a protobuf" * 8)

    # a multi-bit activation between layers (not the input quantizer) wider than the flow
    # takes: 9 bits (the requantizer searches at most 255 thresholds, k = 8)
    for fname, bits, signed in (("act9bit.onnx", 9, 0),):
        model = onnx.load(str(good))
        q = [n for n in model.graph.node if n.op_type == "Quant"][1]
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(float(bits), dtype=np.float32),
                                                                    "act_bits"))
        q.input[3] = "act_bits"
        for a in q.attribute:
            if a.name == "signed":
                a.i = signed
        onnx.save(model, str(d / fname))

    model = onnx.load(str(good))  # an op the flow does not know
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    for n in model.graph.node:
        n.input[:] = ["tanh_out" if i == bn.output[0] else i for i in n.input]
    model.graph.node.insert(list(model.graph.node).index(bn) + 1,
                            onnx.helper.make_node("Tanh", [bn.output[0]], ["tanh_out"], name="my_tanh"))
    onnx.save(model, str(d / "tanh.onnx"))

    model = onnx.load(str(good))  # the first weight cut to 32 of its 784 inputs: shapes contradict
    t = next(t for t in model.graph.initializer if t.name == "layers.2.weight")
    t.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(onnx.numpy_helper.to_array(t)[:, :32]), t.name))
    onnx.save(model, str(d / "bad_shape.onnx"))

    cnv = random_model("cnv", "bipolar", seed=4)
    export_qonnx(cnv, d / "cnv.onnx", (1, 3, 32, 32))
    model = onnx.load(str(d / "cnv.onnx"))  # a 3x3 pool over the 28x28 map
    for a in next(n for n in model.graph.node if n.op_type == "MaxPool").attribute:
        if a.name in ("kernel_shape", "strides"):
            a.ints[:] = [3, 3]
    onnx.save(model, str(d / "cnv_pool3.onnx"))

    (d / "fold_bad_json.json").write_text("{ PE: 3 ")
    for name, fold in {"fold_simd": {"MVTU_0": {"SIMD": 50}}, "fold_pe": {"MVTU_2": {"PE": 7}},
                       "fold_unknown": {"MVTU_7": {"PE": 1}}, "fold_key": {"MVTU_0": {"ram_style": "block"}},
                       "fold_str": {"MVTU_0": {"PE": "8"}}, "fold_neg": {"MVTU_0": {"PE": -2}},
                       "fold_list": [1, 2], "fold_cnv_simd": {"MVTU_1": {"SIMD": 9}}}.items():
        (d / f"{name}.json").write_text(json.dumps(fold))
    for name, cfg in {"cfg_unknown_key": {"model": str(good), "output_dir": str(d / "x"), "turbo": True},
                      "cfg_unknown_step": {"model": str(good), "output_dir": str(d / "x"), "steps": ["place_route"]},
                      "cfg_missing_model": {"output_dir": str(d / "x")},
                      "cfg_bad_clock": {"model": str(good), "output_dir": str(d / "x"), "synth_clk_period_ns": -5},
                      "cfg_fast_clock": {"model": str(good), "output_dir": str(d / "x"), "synth_clk_period_ns": 3,
                                         "steps": ["tidy_up", "streamline", "convert_to_hw", "apply_folding",
                                                   "codegen"]}}.items():
        (d / f"{name}.json").write_text(json.dumps(cfg))
    (d / "cfg_bad.yaml").write_text("model: [unclosed\n")

    mn = d / "mnist_bad_magic"
    mn.mkdir()
    for base, magic, body in [("t10k-images-idx3-ubyte", 0x0803, struct.pack(">III", 2, 28, 28) + bytes(2 * 784)),
                              ("t10k-labels-idx1-ubyte", 0x0801, struct.pack(">I", 2) + bytes(2))]:
        (mn / base).write_bytes(struct.pack(">I", magic ^ 0x10) + body)
    mt = d / "mnist_truncated"
    mt.mkdir()
    (mt / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, 5, 28, 28) + bytes(100))
    (mt / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 5) + bytes(5))

    assert main(["train", "--topology", "digits_mlp", "--act", "bipolar", "--epochs", "1",
                 "--out", str(d / "run"), "--quiet"]) == 0
    (d / "corrupt.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    (d / "afile").write_text("a file where a directory should be")
    return d


def _cases(d):
    o = d / "out"
    build = ["build", "--quiet", "--out", str(o), "--steps", "tidy_up,streamline,convert_to_hw,apply_folding,codegen"]
    tfc = ["--model", str(d / "tfc.onnx")]
    return {
        "model missing": (build + ["--model", str(d / "none.onnx")], "none.onnx: model file not found"),
        "model empty": (build + ["--model", str(d / "empty.onnx")], "empty.onnx: not a valid ONNX model"),
        "model truncated": (build + ["--model", str(d / "truncated.onnx")], "truncated.onnx: not a valid ONNX model"),
        "model garbage": (build + ["--model", str(d / "garbage.onnx")], "garbage.onnx: not a valid ONNX model"),
        "contradicting shapes": (build + ["--model", str(d / "bad_shape.onnx")],
                                 r"bad_shape.onnx: tensor shapes contradict each other \(step tidy_up: \[ShapeInferenceError\]"),
        "unsupported op": (build + ["--model", str(d / "tanh.onnx")], "unsupported op Tanh"),
        "9-bit activation": (build + ["--model", str(d / "act9bit.onnx")],
                             r"node '[^']*Quant[^']*' \(Quant\): 9-bit activation; at most 8-bit"),
        "conv simd vs channels": (build + ["--model", str(d / "cnv.onnx"), "--folding", str(d / "fold_cnv_simd.json")],
                                  "MVTU_1.SIMD = 9 must divide the 64 input channels"),
        "conv pool not tiling": (build + ["--model", str(d / "cnv_pool3.onnx")],
                                 "a 3x3 pool does not tile the 28x28 feature map"),
        "target unreachable": (build + ["--model", str(d / "cnv.onnx"), "--steps",
                                        "tidy_up,streamline,convert_to_hw,target_fps_parallelization,apply_folding",
                                        "--target-fps", "1000000"], "node 'MVTU_0': cannot reach 100 cycles"),
        "folding simd": (build + tfc + ["--folding", str(d / "fold_simd.json")], "MVTU_0.SIMD = 50 does not divide MW = 784"),
        "folding pe": (build + tfc + ["--folding", str(d / "fold_pe.json")], "MVTU_2.PE = 7 does not divide MH = 64"),
        "folding unknown layer": (build + tfc + ["--folding", str(d / "fold_unknown.json")], "unknown layer 'MVTU_7'"),
        "folding unknown key": (build + tfc + ["--folding", str(d / "fold_key.json")], "MVTU_0.ram_style is not a folding key"),
        "folding string PE": (build + tfc + ["--folding", str(d / "fold_str.json")], "MVTU_0.PE = '8' is not a positive integer"),
        "folding negative PE": (build + tfc + ["--folding", str(d / "fold_neg.json")], "MVTU_0.PE = -2 is not a positive integer"),
        "folding not an object": (build + tfc + ["--folding", str(d / "fold_list.json")], "must be a JSON object"),
        "folding bad json": (build + tfc + ["--folding", str(d / "fold_bad_json.json")], "fold_bad_json.json: not valid JSON"),
        "folding missing": (build + tfc + ["--folding", str(d / "nofold.json")], "nofold.json: folding configuration not found"),
        "config unknown key": (["build", "--quiet", "--config", str(d / "cfg_unknown_key.json")], "unknown key 'turbo'"),
        "config unknown step": (["build", "--quiet", "--config", str(d / "cfg_unknown_step.json")], "unknown step 'place_route'"),
        "config missing model": (["build", "--quiet", "--config", str(d / "cfg_missing_model.json")], "missing required key 'model'"),
        "config bad clock": (["build", "--quiet", "--config", str(d / "cfg_bad_clock.json")], "synth_clk_period_ns must be a positive number"),
        "clock no MVTU can meet": (["build", "--quiet", "--config", str(d / "cfg_fast_clock.json")],
                                   r"node 'MVTU_0': synth_clk_period_ns = 3 leaves 1.50 ns of logic per clock"),
        "config bad yaml": (["build", "--quiet", "--config", str(d / "cfg_bad.yaml")], "cfg_bad.yaml: cannot parse build configuration"),
        "config missing": (["build", "--quiet", "--config", str(d / "nocfg.yaml")], "nocfg.yaml: build configuration not found"),
        "unknown topology": (["export", "--topology", "resnet18", "--out", str(o / "m.onnx")], "choices: cnv, digits_cnv, digits_mlp, lfc, sfc, tfc"),
        "unknown activation": (["export", "--act", "ternary", "--out", str(o / "m.onnx")], "choices: bipolar, unipolar"),
        "unknown weight scaling": (["export", "--weight-scaling", "per_row", "--out", str(o / "m.onnx")], "choices: none, per_channel"),
        "export unwritable": (["export", "--out", str(d / "afile" / "m.onnx")], r"not writable \(.*afile is a file\)"),
        "checkpoint other topology": (["eval", "--topology", "digits_mlp", "--act", "unipolar",
                                       "--checkpoint", str(d / "run" / "checkpoint.pt")], "checkpoint.pt"),
        "checkpoint corrupt": (["eval", "--checkpoint", str(d / "corrupt.pt")], "corrupt.pt"),
        "checkpoint missing": (["eval", "--checkpoint", str(d / "missing.pt")], "missing.pt"),
        "unknown dataset": (["train", "--dataset", "imagenet", "--out", str(o)], "imagenet"),
        "mnist dir missing": (["train", "--topology", "tfc", "--dataset", "mnist", "--data-dir", str(d / "nodir"),
                               "--out", str(o)], "nodir"),
        "mnist wrong magic": (["train", "--topology", "tfc", "--dataset", "mnist", "--data-dir", str(d / "mnist_bad_magic"),
                               "--out", str(o)], "t10k-(images|labels)"),
        "mnist truncated": (["train", "--topology", "tfc", "--dataset", "mnist", "--data-dir", str(d / "mnist_truncated"),
                             "--out", str(o)], "t10k-images-idx3-ubyte"),
        "train unwritable out": (["train", "--epochs", "1", "--out", str(d / "afile" / "run")], "afile"),
        "synth without build": (["synth", str(d / "nobuild")], "manifest.json: not found"),
    }


CASE_NAMES = list(_cases(__import__("pathlib").Path("/x")).keys())


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_gives_one_clear_line(assets, case, capsys):
    import re

    argv, pattern = _cases(assets)[case]
    before = sorted(p.name for p in assets.iterdir())
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (case, err)
    assert err.startswith("bnnforge: error: ") and "\n" not in err, err
    assert re.search(pattern, err), (case, err)
    assert sorted(p.name for p in assets.iterdir()) == before, "something was written beside the inputs"
    assert not (assets / "out").exists()


def test_corpus_is_large_enough():
    assert len(CASE_NAMES) >= 25
