"""Hostile models whose headers claim sizes the compiler must never allocate (a conv
with 2^31 output channels, a weight initializer claiming 10^9 elements) are refused
with one `bnnforge: error:` line, within a time and a (traced) memory bound measured
here: at most TIME_BOUND_S seconds and PEAK_BOUND_MB of Python/numpy allocations."""
import copy
import time
import tracemalloc

import onnx
import pytest
import torch

from bnnforge.cli import main
from bnnforge.models.export import export_qonnx
from bnnforge.models.topologies import build_custom_cnv, build_custom_fc

TIME_BOUND_S = 10.0
PEAK_BOUND_MB = 64.0


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    cnv = export_qonnx(build_custom_cnv((1, 8, 8), (4,), (), 2, "bipolar").eval(), d / "cnv.onnx", (1, 1, 8, 8))
    fc = export_qonnx(build_custom_fc((1, 2, 4), (8, 8), 2, "bipolar").eval(), d / "fc.onnx", (1, 1, 2, 4))
    return onnx.load(str(cnv)), onnx.load(str(fc))


def _conv_2g_channels(cnv, fc):
    m = copy.deepcopy(cnv)
    w = next(t for t in m.graph.initializer if len(t.dims) == 4)   # the conv weight (before its quantizer)
    w.dims[0] = 2 ** 31
    return m


def _initializer_1e9(cnv, fc):
    m = copy.deepcopy(fc)
    w = next(t for t in m.graph.initializer if len(t.dims) == 2)
    w.dims[:] = [1000, 1_000_000]
    return m


HOSTILE = {"conv_2^31_channels": _conv_2g_channels, "initializer_10^9_elements": _initializer_1e9}


@pytest.mark.parametrize("drop_value_info", [False, True])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_model_refused_within_time_and_memory(tmp_path, capsys, small_models, name, drop_value_info):
    m = HOSTILE[name](*small_models)
    if drop_value_info:
        del m.graph.value_info[:]
    path = tmp_path / "hostile.onnx"
    onnx.save(m, str(path))
    out = tmp_path / "out"
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        code = main(["build", "--quiet", "--out", str(out), "--model", str(path),
                     "--steps", "tidy_up,streamline,convert_to_hw,apply_folding,codegen"])
        seconds = time.perf_counter() - t0
        peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("bnnforge: error: ") and "\n" not in err and "hostile.onnx" in err, err
    assert seconds < TIME_BOUND_S and peak_mb < PEAK_BOUND_MB, (seconds, peak_mb)
    assert not out.exists()


def _chain(n_matmul: int, n_extra: int = 0) -> onnx.ModelProto:
    """x -> n_matmul MatMuls (8x8 constant weights) -> n_extra Relus: a valid ONNX graph."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "x"
    w = numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    for i in range(n_matmul):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"t{i}"], name=f"MatMul_{i}"))
        prev = f"t{i}"
    for i in range(n_extra):
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"Relu_{i}"))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    inits.append(w)
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    return helper.make_model(graph)


@pytest.mark.parametrize("name, matmuls, extra, message", [
    ("thousand_layer_chain", 1000, 0, r"1000 matrix layers \(MatMul/Gemm/Conv\); .* at most 64"),
    ("hundred_layer_chain", 101, 0, r"101 matrix layers .* at most 64"),
    ("hundred_thousand_nodes", 2, 100_000, r"100003 nodes; .* at most 1024 nodes"),
])
def test_long_chain_refused_within_time_and_memory(tmp_path, capsys, name, matmuls, extra, message):
    """Graphs above the stated bounds (64 matrix layers, 1024 nodes: the steps are
    quadratic in the node count, a 101-layer chain built for minutes) are refused
    before any step, in one line, within the time and memory bounds."""
    import re

    path = tmp_path / "hostile.onnx"
    onnx.save(_chain(matmuls, extra), str(path))
    out = tmp_path / "out"
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        code = main(["build", "--quiet", "--out", str(out), "--model", str(path),
                     "--steps", "tidy_up,streamline,convert_to_hw,apply_folding,codegen"])
        seconds = time.perf_counter() - t0
        peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("bnnforge: error: ") and "\n" not in err and "hostile.onnx" in err, err
    assert re.search(message, err), err
    assert seconds < TIME_BOUND_S and peak_mb < PEAK_BOUND_MB, (seconds, peak_mb)
    assert not out.exists()


def test_graph_size_bound_admits_the_largest_allowed_chain():
    from bnnforge.errors import BnnforgeError
    from bnnforge.finn_flows.builder import MAX_MATRIX_LAYERS, check_graph_size

    check_graph_size(_chain(MAX_MATRIX_LAYERS), "ok.onnx")
    with pytest.raises(BnnforgeError, match=f"{MAX_MATRIX_LAYERS + 1} matrix layers"):
        check_graph_size(_chain(MAX_MATRIX_LAYERS + 1), "big.onnx")
