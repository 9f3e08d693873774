"""Every hw/rtl module is clean under `verilator --lint-only -Wall`, for
several parameter sets; illegal parameters fail elaboration with a clear name."""

from __future__ import annotations

import pytest

from bnnforge.sim.runner import LintError, lint, rtl_sources

pytestmark = pytest.mark.rtl

MVTU_SRC = ("mvtu", "popcount", "popcount_compressor", "adder_tree")
SPARSE_SRC = ("mvtu_sparse", "popcount", "popcount_compressor", "adder_tree", "sign_resize")

LINT_SETS = [
    ("adder_tree", ("adder_tree",), {"N": 1, "IN_W": 3, "SIGNED": 1}),
    ("adder_tree", ("adder_tree",), {"N": 7, "IN_W": 5, "SIGNED": 1}),
    ("adder_tree", ("adder_tree",), {"N": 16, "IN_W": 4, "SIGNED": 0}),
    ("popcount", ("popcount", "adder_tree"), {"N": 1}),
    ("popcount", ("popcount", "adder_tree"), {"N": 37}),
    ("adder_tree", ("adder_tree",), {"N": 7, "IN_W": 5, "SIGNED": 1, "PIPE_EVERY": 1}),
    ("adder_tree", ("adder_tree",), {"N": 16, "IN_W": 4, "SIGNED": 0, "PIPE_EVERY": 2}),
    ("popcount", ("popcount", "adder_tree"), {"N": 37, "PIPE_EVERY": 2}),
    ("popcount", ("popcount", "adder_tree"), {"N": 4, "PIPE_EVERY": 2}),
    ("popcount_compressor", ("popcount_compressor", "adder_tree"), {"N": 1}),
    ("popcount_compressor", ("popcount_compressor", "adder_tree"), {"N": 6, "PIPE_EVERY": 1}),
    ("popcount_compressor", ("popcount_compressor", "adder_tree"), {"N": 49, "PIPE_EVERY": 2}),
    ("popcount_compressor", ("popcount_compressor", "adder_tree"), {"N": 1024, "PIPE_EVERY": 3}),
    ("mvtu", MVTU_SRC, {"MW": 128, "MH": 8, "PE": 2, "SIMD": 64, "PIPE_EVERY": 1}),
    ("mvtu", MVTU_SRC, {"PIPE_EVERY": 2, "WEIGHT_RAM": 1}),
    ("mvtu", MVTU_SRC, {"MW": 1, "MH": 1, "PE": 1, "SIMD": 1, "ACC_BITS": 2, "PIPE_EVERY": 1}),
    ("mvtu", MVTU_SRC, {"MW": 784, "MH": 64, "PE": 16, "SIMD": 49, "MODE": 2, "INPUT_BITS": 8,
                        "INPUT_SIGNED": 0, "ACC_BITS": 20, "PIPE_EVERY": 3}),
    ("mvtu", MVTU_SRC, {"MW": 64, "MH": 64, "PE": 64, "SIMD": 64, "MODE": 1, "ACC_BITS": 8, "OUT_MODE": 1,
                        "PIPE_EVERY": 2}),
    ("mvtu", MVTU_SRC, {"MW": 16, "MH": 8, "PE": 2, "SIMD": 4, "MODE": 1, "ACC_BITS": 6,
                        "OUT_MODE": 2, "OUT_BITS": 3, "PIPE_EVERY": 1}),
    ("mvtu", MVTU_SRC, {"MW": 512, "MH": 10, "PE": 1, "SIMD": 1, "ACC_BITS": 11, "OUT_MODE": 1,
                        "PIPE_EVERY": 1}),  # 5,120-word weight ROM read in 256-word banks
    ("mvtu", MVTU_SRC, {"MW": 150, "MH": 6, "PE": 2, "SIMD": 1, "ACC_BITS": 9, "PIPE_EVERY": 2}),
    ("mvtu", MVTU_SRC, {}),
    ("mvtu", MVTU_SRC, {"WEIGHT_RAM": 1}),
    ("mvtu", MVTU_SRC, {"MW": 1, "MH": 1, "PE": 1, "SIMD": 1, "ACC_BITS": 2}),
    ("mvtu", MVTU_SRC, {"MW": 64, "MH": 64, "PE": 64, "SIMD": 64, "MODE": 1, "ACC_BITS": 8, "OUT_MODE": 1}),
    ("mvtu", MVTU_SRC, {"MW": 784, "MH": 64, "PE": 16, "SIMD": 49, "MODE": 2, "INPUT_BITS": 8,
                        "INPUT_SIGNED": 0, "ACC_BITS": 20}),
    ("mvtu", MVTU_SRC, {"MW": 12, "MH": 6, "PE": 3, "SIMD": 4, "MODE": 2, "INPUT_BITS": 4,
                        "INPUT_SIGNED": 1, "ACC_BITS": 7, "OUT_MODE": 1}),
    ("mvtu", MVTU_SRC, {"MW": 4, "MH": 2, "PE": 1, "SIMD": 4, "ACC_BITS": 4, "OUT_MODE": 1}),
    ("mvtu", MVTU_SRC, {"MW": 12, "MH": 8, "PE": 4, "SIMD": 4, "MODE": 2, "INPUT_BITS": 2,
                        "INPUT_SIGNED": 0, "ACC_BITS": 7, "OUT_MODE": 2, "OUT_BITS": 2}),
    ("mvtu", MVTU_SRC, {"MW": 16, "MH": 8, "PE": 2, "SIMD": 4, "MODE": 1, "ACC_BITS": 6,
                        "OUT_MODE": 2, "OUT_BITS": 3}),
    ("mvtu", MVTU_SRC, {"MW": 4, "MH": 2, "PE": 1, "SIMD": 4, "ACC_BITS": 4, "OUT_MODE": 2,
                        "OUT_BITS": 1}),
    ("mvtu", MVTU_SRC, {"MW": 8, "MH": 4, "PE": 4, "SIMD": 8, "MODE": 2, "INPUT_BITS": 4,
                        "ACC_BITS": 8, "OUT_MODE": 2, "OUT_BITS": 4}),
    ("sign_resize", ("sign_resize",), {"IN_W": 3, "OUT_W": 8}),
    ("sign_resize", ("sign_resize",), {"IN_W": 8, "OUT_W": 3}),
    ("sign_resize", ("sign_resize",), {"IN_W": 5, "OUT_W": 5}),
    ("mvtu_sparse", SPARSE_SRC, {}),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_RAM": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 1, "MH": 1, "PE": 1, "SIMD": 1, "NNZ": 0, "STEPS": 1, "ACC_BITS": 2}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 1, "MH": 1, "PE": 1, "SIMD": 1, "NNZ": 1, "STEPS": 1, "ACC_BITS": 2,
                                 "MODE": 1, "WEIGHT_M": -1, "WEIGHT_Q": 2}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 64, "MH": 64, "PE": 8, "SIMD": 16, "NNZ": 10, "STEPS": 12,
                                 "ACC_BITS": 12, "WEIGHT_M": -1, "WEIGHT_Q": 8}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 12, "MH": 6, "PE": 2, "SIMD": 4, "NNZ": 4, "STEPS": 5, "MODE": 1,
                                 "ACC_BITS": 8, "WEIGHT_M": 3, "WEIGHT_Q": -2, "OUT_MODE": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 12, "MH": 6, "PE": 3, "SIMD": 3, "NNZ": 3, "STEPS": 4, "MODE": 2,
                                 "INPUT_BITS": 3, "INPUT_SIGNED": 1, "ACC_BITS": 10, "WEIGHT_M": -1,
                                 "WEIGHT_Q": 4, "OUT_MODE": 2, "OUT_BITS": 2}),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_KIND": "pm1_blocks"}),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_KIND": "pm1_blocks", "MODE": 1, "OUT_MODE": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 784, "MH": 64, "PE": 16, "SIMD": 49, "NNZ": 20, "STEPS": 24,
                                 "WEIGHT_KIND": "pm1_blocks", "MODE": 2, "INPUT_BITS": 8,
                                 "ACC_BITS": 20, "OUT_MODE": 2, "OUT_BITS": 4}),
    ("mvtu_sparse", SPARSE_SRC, {"PIPE_EVERY": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 1, "MH": 1, "PE": 1, "SIMD": 1, "NNZ": 1, "STEPS": 1, "ACC_BITS": 2,
                                 "MODE": 1, "WEIGHT_M": -1, "WEIGHT_Q": 2, "PIPE_EVERY": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 64, "MH": 32, "PE": 8, "SIMD": 16, "NNZ": 10, "STEPS": 12,
                                 "ACC_BITS": 12, "WEIGHT_M": -1, "WEIGHT_Q": 8, "PIPE_EVERY": 2,
                                 "OUT_FLIP": 5}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 12, "MH": 6, "PE": 3, "SIMD": 3, "NNZ": 3, "STEPS": 4, "MODE": 2,
                                 "INPUT_BITS": 3, "INPUT_SIGNED": 1, "ACC_BITS": 10, "WEIGHT_M": -1,
                                 "WEIGHT_Q": 4, "OUT_MODE": 2, "OUT_BITS": 2, "PIPE_EVERY": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_KIND": "pm1_blocks", "MODE": 1, "OUT_MODE": 1, "PIPE_EVERY": 1}),
    ("mvtu_sparse", SPARSE_SRC, {"MW": 784, "MH": 64, "PE": 16, "SIMD": 49, "NNZ": 20, "STEPS": 24,
                                 "WEIGHT_KIND": "pm1_blocks", "MODE": 2, "INPUT_BITS": 8,
                                 "ACC_BITS": 20, "OUT_MODE": 2, "OUT_BITS": 4, "PIPE_EVERY": 3}),
    ("stream_fifo", ("stream_fifo",), {"WIDTH": 1, "DEPTH": 1}),
    ("stream_fifo", ("stream_fifo",), {"WIDTH": 64, "DEPTH": 7}),
    ("stream_skid", ("stream_skid",), {"WIDTH": 1}),
    ("stream_skid", ("stream_skid",), {"WIDTH": 64}),
    ("stream_dwc", ("stream_dwc",), {"IN_WIDTH": 16, "OUT_WIDTH": 6}),
    ("stream_dwc", ("stream_dwc",), {"IN_WIDTH": 1, "OUT_WIDTH": 64}),
    ("stream_dwc", ("stream_dwc",), {"IN_WIDTH": 8, "OUT_WIDTH": 8}),
    ("label_select", ("label_select", "stream_fifo"), {"PE": 1, "NF": 1, "ACC_BITS": 2, "INDEX_BITS": 1}),
    ("label_select", ("label_select", "stream_fifo"), {"PE": 16, "NF": 1, "ACC_BITS": 8, "INDEX_BITS": 4}),
    ("label_select", ("label_select", "stream_fifo"), {"PE": 5, "NF": 20, "ACC_BITS": 16, "INDEX_BITS": 8}),
    ("sliding_window", ("sliding_window",), {}),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 1, "C": 1, "K": 1, "SIMD": 1}),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 32, "C": 3, "K": 3, "SIMD": 3, "EB": 8}),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 30, "C": 64, "K": 3, "SIMD": 32}),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 7, "C": 8, "K": 5, "S": 2, "PAD": 1, "SIMD": 1}),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 4, "C": 2, "K": 1, "PAD": 1, "SIMD": 2}),
    ("maxpool_bin", ("maxpool_bin",), {}),
    ("maxpool_bin", ("maxpool_bin",), {"IFM_DIM": 28, "C": 64, "P": 2, "SIMD": 16}),
    ("maxpool_bin", ("maxpool_bin",), {"IFM_DIM": 6, "C": 3, "P": 3, "SIMD": 1, "EB": 8}),
    ("maxpool_bin", ("maxpool_bin",), {"IFM_DIM": 3, "C": 2, "P": 1, "SIMD": 2}),
    ("maxpool_bin", ("maxpool_bin",), {"IFM_DIM": 2, "C": 1, "P": 2, "SIMD": 1}),
]


@pytest.mark.parametrize("top,srcs,params", LINT_SETS,
                         ids=[f"{t}-{'-'.join(f'{k}{v}' for k, v in p.items()) or 'default'}"
                              for t, _, p in LINT_SETS])
def test_lint_clean(top, srcs, params):
    assert lint(rtl_sources(*srcs), top, params) == []


@pytest.mark.parametrize("top,srcs,params,needle", [
    ("mvtu", MVTU_SRC, {"MW": 6, "SIMD": 4}, "mvtu_error_MW_not_divisible_by_SIMD"),
    ("mvtu", MVTU_SRC, {"MH": 6, "PE": 4}, "mvtu_error_MH_not_divisible_by_PE"),
    ("mvtu", MVTU_SRC, {"MODE": 0, "INPUT_BITS": 4}, "mvtu_error_INPUT_BITS_must_be_1_in_MODE_0_and_1"),
    ("mvtu", MVTU_SRC, {"OUT_MODE": 3}, "mvtu_error_OUT_MODE_must_be_0_1_or_2"),
    ("mvtu", MVTU_SRC, {"OUT_MODE": 2, "OUT_BITS": 0}, "mvtu_error_OUT_BITS_must_be_1_to_8_in_OUT_MODE_2"),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_KIND": "pm1"},
     "mvtu_sparse_error_WEIGHT_KIND_must_be_sparse01_or_pm1_blocks"),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_Q": 0}, "mvtu_sparse_error_WEIGHT_Q_must_be_nonzero"),
    ("mvtu_sparse", SPARSE_SRC, {"WEIGHT_KIND": "pm1_blocks", "WEIGHT_M": -1},
     "mvtu_sparse_error_pm1_blocks_needs_WEIGHT_M_0_and_WEIGHT_Q_1"),
    ("mvtu_sparse", SPARSE_SRC, {"NNZ": 3, "STEPS": 2},
     "mvtu_sparse_error_need_0_le_NNZ_le_STEPS_and_NF_le_STEPS_le_NF_times_SF"),
    ("mvtu_sparse", SPARSE_SRC, {"STEPS": 1},
     "mvtu_sparse_error_need_0_le_NNZ_le_STEPS_and_NF_le_STEPS_le_NF_times_SF"),
    ("mvtu_sparse", SPARSE_SRC, {"ACC_BITS": 33}, "mvtu_sparse_error_ACC_BITS_must_be_2_to_32"),
    ("mvtu", MVTU_SRC, {"PIPE_EVERY": -1}, "mvtu_error_PIPE_EVERY_must_be_nonnegative"),
    ("popcount_compressor", ("popcount_compressor", "adder_tree"), {"N": 8, "OUT_W": 3},
     "popcount_compressor_error_OUT_W_must_be_clog2_N_plus_1"),
    ("label_select", ("label_select", "stream_fifo"), {"PE": 4, "NF": 5, "INDEX_BITS": 4},
     "label_select_error_INDEX_BITS_too_small_for_NF_times_PE"),
    ("sliding_window", ("sliding_window",), {"C": 6, "SIMD": 4}, "sliding_window_error_C_not_divisible_by_SIMD"),
    ("sliding_window", ("sliding_window",), {"IFM_DIM": 2, "K": 5, "PAD": 1},
     "sliding_window_error_K_larger_than_padded_input"),
    ("sliding_window", ("sliding_window",), {"S": 0},
     "sliding_window_error_K_S_EB_IFM_DIM_must_be_positive_PAD_nonnegative"),
    ("maxpool_bin", ("maxpool_bin",), {"IFM_DIM": 5, "P": 2}, "maxpool_bin_error_IFM_DIM_not_divisible_by_P"),
    ("maxpool_bin", ("maxpool_bin",), {"C": 6, "SIMD": 4}, "maxpool_bin_error_C_not_divisible_by_SIMD"),
])
def test_illegal_parameters_fail_elaboration(top, srcs, params, needle):
    with pytest.raises(LintError) as ei:
        lint(rtl_sources(*srcs), top, params)
    assert needle in str(ei.value)
