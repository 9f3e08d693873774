"""step_target_fps_parallelization: choose PE/SIMD for every MVTU from a throughput
target (build keys `target_fps`, FINN's name, or `target_cycles_per_frame`).

FINN grows each layer's folding until it meets the target; here every layer picks,
among all foldings that respect the divisibility rules (PE | MH, SIMD | MW, and SIMD | C
where a sliding window feeds the MVTU), the one with the least estimated resources
that keeps the layer and its stream neighbours at or under the target: the sliding
window in front (its SIMD is the MVTU's) and the pool behind (its SIMD is the MVTU's
PE). Resources are the per-layer estimates of step_estimates, weighed as shares of the
part (LUT share + BRAM18 share), so a BRAM-heavy and a LUT-heavy choice are compared on
what the chip has. Block-sparse units (MVTUSparse) are folded the same way, their stored
blocks and schedule length rebuilt for every candidate folding. Layers are independent in a streaming pipeline, so choosing each
layer's cheapest feasible folding minimises the sum.

The result is written as a FINN-style folding JSON (`auto_folding.json` in the build
directory, the same format `--folding` reads, so it can be edited and fed back), with a
per-layer table (`report/auto_folding.md`); step_apply_folding then applies it.
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import get_attrs, producers, readers
from bnnforge.hw.stages.mvtu import mvtu_pipe_every
from ..operators import for_hw

PARTS = {"xc7z020clg400-1": {"lut": 53200, "bram18": 280}, "xc7z020": {"lut": 53200, "bram18": 280}}


def target_cycles(cfg) -> int | None:
    fps, cyc = getattr(cfg, "target_fps", None), getattr(cfg, "target_cycles_per_frame", None)
    if fps is not None and cyc is not None:
        raise BnnforgeError("config: give target_fps or target_cycles_per_frame, not both")
    if fps is not None:
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise BnnforgeError(f"config: target_fps = {fps!r} is not a positive number")
        return max(1, int(cfg.fclk_mhz * 1e6 // fps))
    if cyc is not None:
        if not (isinstance(cyc, int) and not isinstance(cyc, bool) and cyc > 0):
            raise BnnforgeError(f"config: target_cycles_per_frame = {cyc!r} is not a positive integer")
        return cyc
    return None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _unit_estimate(model, node, a, pe, simd) -> dict | None:
    """Estimate of an MVTU, or of an MVTUSparse whose block schedule (stored blocks,
    steps) is rebuilt for this folding; None for a folding the sparse layout refuses
    (a group of a grouped layer straddling a PE x SIMD block)."""
    if node.op_type != "MVTUSparse":
        return for_hw(node.op_type).estimate(node.name, dict(a, PE=pe, SIMD=simd))
    from bnnforge.hw.memfiles_sparse import sparse_layer

    try:
        sl = sparse_layer(model, node, pe, simd)
    except BnnforgeError:
        return None
    return for_hw(node.op_type).estimate(node.name, dict(a, PE=pe, SIMD=simd, NNZ=sl.nnz, STEPS=sl.steps))


def choose_folding(model: onnx.ModelProto, target: int, part: str = "xc7z020clg400-1",
                   clk_period_ns: float | None = None) -> tuple[dict, list]:
    """Cheapest folding meeting `target` cycles per frame: (FINN-style folding dict,
    per-layer plan rows). Raises naming the layer that cannot reach the target, or a
    clock (FINN's synth_clk_period_ns) too fast for the units' adder trees however
    they are folded; each row records how the chosen folding's tree is pipelined for
    that clock (adder levels per register, hw/stages/mvtu.py)."""
    if part not in PARTS:
        raise BnnforgeError(f"config: unknown fpga_part {part!r} for automatic folding; known: {', '.join(PARTS)}")
    cap = PARTS[part]
    nodes = list(model.graph.node)
    prod, read = producers(model), readers(model)
    folding, plan = {"Defaults": {}}, []
    for k, node in enumerate(nodes):
        op = for_hw(node.op_type)
        if op is None or op.folding_keys != ("PE", "SIMD"):
            continue
        a = get_attrs(node)
        # a clock too fast for one adder level per register is refused before any
        # folding is weighed (the check does not depend on the folding)
        mvtu_pipe_every(1, clk_period_ns, node.name)
        src, dst = prod.get(node.input[0]), read.get(node.output[0], [])
        win = src if src is not None and src.op_type == "SlidingWindow" else None
        pool = dst[0] if len(dst) == 1 and dst[0].op_type == "StreamingMaxPool" else None
        wa = get_attrs(win) if win is not None else None
        pa = get_attrs(pool) if pool is not None else None
        simds = [s for s in _divisors(a["MW"]) if wa is None or wa["C"] % s == 0]
        best, fastest = None, None
        for pe in _divisors(a["MH"]):
            for simd in simds:
                mv = _unit_estimate(model, node, a, pe, simd)
                if mv is None:
                    continue
                parts = [mv]
                if wa is not None:
                    parts.append(for_hw(win.op_type).estimate(win.name, dict(wa, SIMD=simd)))
                if pa is not None:
                    parts.append(for_hw(pool.op_type).estimate(pool.name, dict(pa, SIMD=pe)))
                cycles = max(p["cycles"] for p in parts)
                luts = sum(p["est_luts"] for p in parts)
                bram = sum(p["est_bram18"] for p in parts)
                if fastest is None or cycles < fastest[0]:
                    fastest = (cycles, pe, simd)
                if cycles > target:
                    continue
                key = (luts / cap["lut"] + bram / cap["bram18"], -cycles, pe * simd)
                if best is None or key < best[0]:
                    best = (key, pe, simd, cycles, luts, bram, parts)
        if fastest is None:
            raise BnnforgeError(f"node {node.name!r}: no folding fits its block-sparse layout")
        if best is None:
            c, pe, simd = fastest
            raise BnnforgeError(
                f"node {node.name!r}: cannot reach {target:,} cycles per frame; its fastest folding "
                f"(PE {pe}, SIMD {simd}) needs {c:,} cycles"
                + (f" (SIMD must divide the {wa['C']} channels its sliding window streams)" if wa else ""))
        _, pe, simd, cycles, luts, bram, parts = best
        folding[node.name] = {"PE": pe, "SIMD": simd}
        plan.append({"name": node.name, "MW": a["MW"], "MH": a["MH"], "pixels": a.get("pixels", 1),
                     "PE": pe, "SIMD": simd, "cycles": cycles, "est_luts": luts, "est_bram18": bram,
                     "tree_levels": max(1, (simd - 1).bit_length()),
                     "pipe_every": mvtu_pipe_every(simd, clk_period_ns, node.name),
                     "with": [p["name"] for p in parts[1:]]})
    return folding, plan


def format_plan(plan: list, target: int, fclk_mhz: float) -> str:
    rows = [f"# Automatic folding for {target:,} cycles per frame "
            f"({fclk_mhz * 1e6 / target:,.0f} frames/s at the {fclk_mhz:g} MHz target clock)", "",
            "Each MVTU's cheapest folding that meets the target; LUT/BRAM include the sliding window "
            "in front and the pool behind it (named in the last column). Each unit's adder tree "
            f"(clog2(SIMD) levels) is registered every 'levels/clock' levels for the {1000 / fclk_mhz:g} ns "
            "clock (synth_clk_period_ns).", "",
            "| layer | MW x MH | pixels | PE | SIMD | cycles | tree levels | levels/clock | est. LUT | "
            "est. BRAM18 | with |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in plan:
        rows.append(f"| {r['name']} | {r['MW']} x {r['MH']} | {r['pixels']:,} | {r['PE']} | {r['SIMD']} | "
                    f"{r['cycles']:,} | {r['tree_levels']} | {r['pipe_every']} | {r['est_luts']:,} | "
                    f"{r['est_bram18']} | {', '.join(r['with']) or '-'} |")
    worst = max(r["cycles"] for r in plan)
    rows.append(f"\nSlowest layer: {worst:,} cycles per frame (target {target:,}); "
                f"estimated {sum(r['est_luts'] for r in plan):,} LUT, {sum(r['est_bram18'] for r in plan)} BRAM18.")
    return "\n".join(rows) + "\n"


def step_target_fps_parallelization(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    target = target_cycles(cfg)
    if target is None:
        return model
    if cfg.folding:
        raise BnnforgeError(f"{cfg.folding_source or 'config'}: a folding is given together with a throughput "
                            "target; drop one (the automatic folding is written to auto_folding.json to edit)")
    folding, plan = choose_folding(model, target, cfg.fpga_part, cfg.synth_clk_period_ns)
    build = Path(cfg.build_dir)
    path = build / "auto_folding.json"
    path.write_text(json.dumps(folding, indent=2) + "\n")
    (build / "report").mkdir(exist_ok=True)
    (build / "report" / "auto_folding.md").write_text(format_plan(plan, target, cfg.fclk_mhz))
    cfg.folding = folding
    cfg.folding_source = str(Path(cfg.output_dir) / "auto_folding.json")
    return model
