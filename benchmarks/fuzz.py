"""Differential fuzzing of the whole flow on random small fully-connected BNNs.

    python benchmarks/fuzz.py --count 300 --seed 0 --no-rtl --out runs/fuzz
    python benchmarks/fuzz.py --count 50 --seed 1000 --rtl --out runs/fuzz

Case i uses seed S+i (bnnforge/fuzz.py: random_case). Without RTL a case takes ~0.1-1 s
(export + build + golden vs torch on 64 images; 400 cases measured in 374 s). With RTL the Verilator build of
the case's design dominates: measured 8.9 s/case mean, 35 s max (117 cases, 2 shared
cores) with the compiled bulk harness (sim/bulk.py, 64 frames); 300 RTL cases ~45 min.
The cocotb fallback costs about the same per case (at most
16 frames and RTL_CYCLE_BUDGET ideal cycles per case, so a case's simulation stays
under ~5 s). --max-seconds stops early (after the running case) to bound a run.
Reproducers of failing cases land in OUT/reproducers/. With --shrink each failing case
is also reduced (layers, channels, inputs, edge-case edits, folding factors) while it
still fails the same way, and the small reproducer is saved under --store (default
OUT/shrunk; tests/fuzz_regressions/ is the store the tests replay).

With --graph the cases come from the graph fuzzer (bnnforge/fuzz_graph.py: convolutions
of every kernel/stride/padding, max pools, dense / grouped (pm1_blocks) / binary-domain
(sparse01) / k-bit (mvtu_kbit) layers, bipolar / unipolar / unsigned and signed k-bit activations, label
select or raw accumulators) and a table per operator kind (cases, RTL frames,
mismatches) and the parameter corners covered are printed at the end:

    nice -n 10 python benchmarks/fuzz.py --graph --count 500 --seed 0 --jobs 2 --out runs/fuzz-graph

--jobs N runs cases in N worker processes; --ray runs them as Ray tasks instead (bnnforge[cluster]:
a local Ray with --jobs CPUs, default the cores, or the cluster at --address HOST:PORT), with
the same results.jsonl and tables:

    python benchmarks/fuzz.py --graph --count 6 --no-rtl --ray --out runs/fuzz-ray
    python benchmarks/fuzz.py --graph --count 500 --ray --address HEAD:6379 --out runs/fuzz-graph

--summarize A/results.jsonl B/results.jsonl prints one table over graph and residual runs
split over seed ranges (or stopped by --max-seconds), each (mode, seed) counted once with
the kinds recorded in its line.

Proof that the loop finds and shrinks a bug (a test-only fault in the golden model):

    python benchmarks/fuzz.py --count 10 --seed 0 --no-rtl --inject-fault mvtu_threshold_strict \
        --shrink --stop-after-failures 1 --out runs/fuzz-fault
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bnnforge.sim.golden import FAULT_ENV, FAULTS

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from tqdm import tqdm

    from bnnforge.fuzz import random_case, shrink_and_save
    from bnnforge.fuzz_graph import coverage, random_graph_case, shrink_and_save_graph

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtl", dest="rtl", action="store_true", default=True)
    ap.add_argument("--no-rtl", dest="rtl", action="store_false")
    ap.add_argument("--out", default="runs/fuzz")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--shrink", action="store_true", help="shrink failing cases and save them to --store")
    ap.add_argument("--store", default=None, help="folder for shrunk reproducers (default OUT/shrunk)")
    ap.add_argument("--inject-fault", default=None, choices=FAULTS,
                    help="test-only fault in the golden model (shows the fuzzer finds and shrinks it)")
    ap.add_argument("--stop-after-failures", type=int, default=None)
    ap.add_argument("--graph", action="store_true", help="graph fuzzer: every operator kind (fuzz_graph.py)")
    ap.add_argument("--residual", action="store_true",
                    help="random residual networks (fuzz_residual.py): k-bit and both 1-bit activations, identity "
                         "and downsampling shortcuts, conv and FC blocks, random foldings")
    ap.add_argument("--jobs", type=int, default=None,
                    help="cases run in this many worker processes (with --ray: local Ray CPUs, default the cores)")
    ap.add_argument("--ray", action="store_true",
                    help="cases as Ray tasks (bnnforge[cluster]): a local Ray, or the cluster at --address")
    ap.add_argument("--address", default=None,
                    help="with --ray: a Ray cluster (HOST:PORT, as printed by `ray start --head`)")
    ap.add_argument("--summarize", nargs="+", metavar="RESULTS_JSONL",
                    help="print the graph fuzzer's tables from saved results.jsonl files and exit")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    if args.inject_fault:
        os.environ[FAULT_ENV] = args.inject_fault
    if args.residual and args.graph:
        ap.error("--residual runs its own cases: not with --graph")
    if args.address is not None and not args.ray:
        ap.error("--address: only with --ray")
    stack = contextlib.ExitStack()
    if args.ray:
        from bnnforge.cluster import cluster_cpus, prepare, ray_session
        from bnnforge.errors import BnnforgeError

        try:
            prepare("--ray", args.address, args.jobs)
            t_ray = time.perf_counter()
            stack.enter_context(ray_session(args.address, args.jobs))
        except BnnforgeError as e:
            print(f"bnnforge: error: {e}", file=sys.stderr)
            return 2
        print(f"Ray: {cluster_cpus()} CPUs, started or joined in {time.perf_counter() - t_ray:.1f} s", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repro = out / "reproducers"
    kinds = collections.Counter()
    failures, times, ties, frames = [], [], 0, 0
    per_kind = collections.defaultdict(lambda: [0, 0, 0])      # kind -> [cases, rtl frames, mismatches]
    corners = collections.Counter()
    from bnnforge.fuzz_residual import random_residual_case, residual_coverage, shrink_and_save_residual

    make_case, shrink_one = ((random_graph_case, shrink_and_save_graph) if args.graph
                             else (random_case, shrink_and_save))
    if args.residual:
        make_case, shrink_one = random_residual_case, shrink_and_save_residual
    mode = "residual" if args.residual else ("graph" if args.graph else "fc")
    t_start = time.perf_counter()
    bar = tqdm(range(args.count), desc="fuzz" + (f" {mode}" if mode != "fc" else "") + (" (rtl)" if args.rtl else ""),
               unit="case")
    pool = None
    jobs = [(mode, args.seed + i, args.rtl, str(repro)) for i in range(args.count)]
    if args.ray:
        results = _ray_results(jobs)
    elif (args.jobs or 1) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(args.jobs)
        results = pool.imap(_run_seed, jobs)
    else:
        results = (_run_seed(job) for job in jobs)
    with open(out / "results.jsonl", "a") as log:
        for i, r in zip(bar, results):
            case = make_case(args.seed + i)
            if mode != "fc":
                cov = residual_coverage(case) if args.residual else coverage(case)
                # recorded with the result: --summarize must not regenerate a case from
                # its seed, the generator may have changed since
                # plus the hardware operators the build emitted (what the compiler chose)
                kinds_here = set(cov["kinds"]) | {f"unit_{op}" for op in r.get("hw_ops", [])}
                r.update(mode=mode, kinds=sorted(kinds_here), corners=sorted(cov["corners"]))
                for k in kinds_here:
                    row = per_kind[k]
                    row[0] += 1
                    row[1] += r.get("rtl_frames", 0)
                    row[2] += not r["ok"]
                corners.update(cov["corners"])
            times.append(r["seconds"])
            ties += r.get("ties", 0)
            frames += r.get("rtl_frames", 0)
            r["summary"] = case.summary()
            log.write(json.dumps({k: v for k, v in r.items() if k != "traceback"}) + "\n")
            log.flush()
            if not r["ok"]:
                kinds[r["kind"]] += 1
                failures.append(r)
                tqdm.write(f"MISMATCH {r['kind']} {r['summary']}\n  {r['reason']}\n  -> {r['reproducer']}")
                if args.shrink and r["kind"] != "worker_lost":
                    t_shrink = time.perf_counter()
                    with tempfile.TemporaryDirectory(prefix="fuzz-shrink-") as work:
                        d = shrink_one(case, r, args.store or out / "shrunk", work, rtl=args.rtl,
                                       injected_fault=args.inject_fault, log=tqdm.write)
                    small = json.loads((d / "case.json").read_text())
                    images = len(np.load(d / "inputs.npy"))
                    tqdm.write(f"shrunk in {time.perf_counter() - t_shrink:.1f} s to {images} inputs: "
                               f"{small['summary']}\n  -> {d}")
                    r["shrunk"] = str(d)
            bar.set_postfix(fail=len(failures))
            if args.stop_after_failures and len(failures) >= args.stop_after_failures:
                break
            if args.max_seconds and time.perf_counter() - t_start > args.max_seconds:
                tqdm.write(f"stopping: --max-seconds {args.max_seconds} reached")
                break
    if pool is not None:
        pool.terminate()
    if args.ray:
        results.close()   # cancels the cases not yet taken (a bound on time or failures)
    stack.close()
    wall = time.perf_counter() - t_start
    n = len(times)
    print(f"cases tried: {n} (seeds {args.seed}..{args.seed + n - 1}, rtl={'on' if args.rtl else 'off'})")
    print(f"mismatches: {len(failures)}" + (f" by kind: {dict(kinds)}" if kinds else ""))
    print(f"integer argmax ties (torch picked another tied index, not failures): {ties}")
    if args.rtl:
        print(f"RTL frames simulated: {frames}")
    if n:
        print(f"time: {wall:.1f} s total, {wall / n:.2f} s/case mean, {max(times):.2f} s max")
    if mode != "fc" and n:
        print_kind_table(per_kind, corners, n)
    for r in failures:
        print(f"reproducer: {r['reproducer']}  ({r['kind']}: {r['reason'][:160]})")
    return 1 if failures else 0


def print_kind_table(per_kind: dict, corners: dict, n: int) -> None:
    print(f"\nper operator kind ({n} networks):")
    print(f"| {'kind':<22} | {'cases':>6} | {'RTL frames':>10} | {'mismatches':>10} |")
    print(f"|{'-' * 24}|{'-' * 8}|{'-' * 12}|{'-' * 12}|")
    for k in sorted(per_kind):
        c, f, m = per_kind[k]
        print(f"| {k:<22} | {c:>6} | {f:>10} | {m:>10} |")
    print("parameter corners (networks): " + ", ".join(f"{k} {v}" for k, v in sorted(corners.items())))


def summarize(paths) -> int:
    """The per-kind tables of saved graph / residual results.jsonl files (runs split over
    seed ranges, or stopped by --max-seconds): each (mode, seed) counted once, with the
    operator kinds and corners recorded in its line."""
    rows = {}
    for p in paths:
        for n, line in enumerate(Path(p).read_text().splitlines(), 1):
            r = json.loads(line)
            if "kinds" not in r or "mode" not in r:
                print(f"fuzz.py: error: {p}:{n}: no recorded mode/kinds (a results line of an older "
                      "fuzz.py); rerun that seed", file=sys.stderr)
                return 2
            rows[(r["mode"], r["seed"])] = r
    if not rows:
        print("fuzz.py: error: no results in " + ", ".join(map(str, paths)), file=sys.stderr)
        return 2
    per_kind = collections.defaultdict(lambda: [0, 0, 0])
    corners = collections.Counter()
    for _key, r in sorted(rows.items()):
        for k in r["kinds"]:
            per_kind[k][0] += 1
            per_kind[k][1] += r.get("rtl_frames", 0)
            per_kind[k][2] += not r["ok"]
        corners.update(r["corners"])
    n = len(rows)
    for mode in sorted({m for m, _ in rows}):
        seeds = [s for m, s in rows if m == mode]
        print(f"{mode}: {len(seeds)} networks (seeds {min(seeds)}..{max(seeds)})")
    secs = [r["seconds"] for r in rows.values()]
    bad = [r for r in rows.values() if not r["ok"]]
    print(f"networks: {n}, mismatches: {len(bad)}, RTL frames: "
          f"{sum(r.get('rtl_frames', 0) for r in rows.values())}, per case: {sum(secs) / n:.1f} s mean, "
          f"{max(secs):.1f} s max (one worker's time)")
    print_kind_table(per_kind, corners, n)
    for r in bad:
        print(f"mismatch: {r['mode']} seed {r['seed']} {r['kind']}: {r['reason'][:160]}")
    return 1 if bad else 0


def _ray_results(jobs):
    """The cases as Ray tasks (bnnforge/cluster.py), in seed order like --jobs; a case
    whose worker was lost more often than the retries allow is a failed case."""
    from bnnforge.cluster import TaskFailed, run_tasks

    for i, r in run_tasks(_run_seed, jobs, ordered=True):
        if isinstance(r, TaskFailed):
            mode, seed, rtl, _ = jobs[i]
            r = {"seed": seed, "ok": False, "kind": "worker_lost", "reason": r.message, "reproducer": None,
                 "rtl": rtl, "seconds": 0.0}
        yield r


def _run_seed(job):
    """One case in a fresh temporary folder (a worker process when --jobs > 1)."""
    import warnings

    warnings.filterwarnings("ignore")
    mode, seed, rtl, repro = job
    if mode == "residual":
        from bnnforge.fuzz_residual import random_residual_case, run_residual_case
        with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
            return run_residual_case(random_residual_case(seed), work, rtl=rtl, reproducer_dir=repro)
    if mode == "graph":
        from bnnforge.fuzz_graph import random_graph_case as make, run_graph_case as run
    else:
        from bnnforge.fuzz import random_case as make, run_case as run
    with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
        return run(make(seed), work, rtl=rtl, reproducer_dir=repro)


if __name__ == "__main__":
    sys.exit(main())
