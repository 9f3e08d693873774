"""Whole-network RTL simulation: frames in, outputs compared bit-exactly with golden."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bnnforge.hw.memfiles import pack_fields


def frame_beats(q: np.ndarray, simd: int, elem_bits: int) -> list[int]:
    """Integer inputs [N, ...] (flat or channels-last) -> input beats per the stream
    contract (LSB first)."""
    beats = []
    q = np.asarray(q, dtype=np.int64)
    for row in q.reshape(len(q), -1):
        for k in range(len(row) // simd):
            beats.append(pack_fields(row[k * simd:(k + 1) * simd], elem_bits))
    return beats


def expected_beats(golden_out: np.ndarray, manifest: dict) -> list[int]:
    if manifest["label_select"]:
        return [int(v) for v in golden_out]
    last = manifest["layers"][-1]
    width = {1: last["ACC_BITS"], 2: last.get("OUT_BITS", 1)}.get(last["OUT_MODE"], 1)
    pe = last["PE"]
    beats = []
    for row in np.asarray(golden_out, dtype=np.int64):
        for n in range(len(row) // pe):
            beats.append(pack_fields(row[n * pe:(n + 1) * pe], width))
    return beats


def tlast_pattern_ok(lasts: list[int], out_beats_per_frame: int) -> bool:
    """TLAST exactly on the last beat of every frame."""
    return all(l == int((k + 1) % out_beats_per_frame == 0) for k, l in enumerate(lasts))


def steady_cycles_per_frame(frame_end_cycles: list[int]) -> float:
    """Mean distance between frame ends over the second half of the run (steady state)."""
    half = len(frame_end_cycles) // 2
    n = len(frame_end_cycles) - 1 - half
    return (frame_end_cycles[-1] - frame_end_cycles[half]) / n if n > 0 else float("nan")


def count_mismatches(got: list[int], expected: list[int], extra_beats: int) -> tuple[int, list[int]]:
    """Differing beats + extra beats + 1 if the beat counts differ; and the first differing indices."""
    diff = [k for k, (g, e) in enumerate(zip(got, expected)) if g != e]
    return len(diff) + extra_beats + (0 if len(got) == len(expected) else 1), diff[:10]


def run_network(rtl_dir: str | Path, q_inputs: np.ndarray, golden_out: np.ndarray, *,
                p_gap: float = 0.0, p_stall: float = 0.0, seed: int = 0) -> dict:
    """Simulate the generated design in rtl_dir (Verilator + cocotb) on q_inputs and
    compare every output beat with the golden model's. Returns figures and mismatches."""
    from bnnforge.sim.runner import build, run_test

    rtl_dir = Path(rtl_dir).resolve()
    manifest = json.loads((rtl_dir / "manifest.json").read_text())
    beats = frame_beats(q_inputs, manifest["in_simd"], manifest["in_element_bits"])
    expected = expected_beats(golden_out, manifest)
    ideal = manifest["ideal_cycles_per_frame"]
    case = {"in_beats": [str(b) for b in beats], "n_out": len(expected), "p_gap": p_gap, "p_stall": p_stall,
            "seed": seed, "in_beats_per_frame": manifest["in_beats_per_frame"],
            # the fill latency can exceed a frame interval many times (CNV: nine layers of about
            # one interval each), so a run of few frames needs every stage's frame time on top
            "max_cycles": 2000 + int(ideal * len(q_inputs) * (4 if (p_gap or p_stall) else 1.5)) + 10 * len(beats)
            + sum(int(st.get("cycles", 0)) for st in manifest["stages"])}
    work = rtl_dir / "rtlsim"
    work.mkdir(exist_ok=True)
    case_file, result_file = work / "case.json", work / "result.json"
    case_file.write_text(json.dumps(case))
    if result_file.exists():
        result_file.unlink()
    sources = [rtl_dir / f for f in manifest["files"]]
    t0 = time.perf_counter()
    build(sources, manifest["top"])
    build_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_test(sources, manifest["top"], "bnnforge.sim.tb.tb_network",
             workdir=rtl_dir, extra_env={"TB_CASE": str(case_file), "TB_RESULT": str(result_file)})
    wall = time.perf_counter() - t0
    res = json.loads(result_file.read_text())
    got = [int(v) for v in res["out"]]
    n_bad, first_bad = count_mismatches(got, expected, res["extra_beats"])
    frame_end = [c for c, l in zip(res["out_cycles"], res["tlast"]) if l]
    frames = len(q_inputs)
    return {
        "frames": frames,
        "output_beats": len(got),
        "rtl_mismatches": n_bad,
        "first_mismatches": first_bad,
        "tlast_correct": tlast_pattern_ok(res["tlast"], manifest["out_beats_per_frame"]),
        "extra_beats": res["extra_beats"],
        "cycles_total": res["cycles"],
        "latency_cycles_first_frame": frame_end[0] if frame_end else None,
        "cycles_per_frame_measured": steady_cycles_per_frame(frame_end),
        "cycles_per_frame_ideal": ideal,
        "sim_build_seconds": round(build_wall, 3),
        "sim_wall_seconds": round(wall, 3),
        "sim_frames_per_second": frames / wall,
        "sim_cycles_per_second": res["cycles"] / wall,
        "outputs": got,
        "labels_rtl": got if manifest["label_select"] else None,
    }
