"""Mutation fuzzing of `bnnforge build`: N corrupted versions of a valid exported model
(dropped initializers, corrupt shapes and datatypes, unknown ops, swapped inputs, wrong
or missing attributes, dropped nodes, dangling tensors, truncated files, flipped bytes,
NaN weights, duplicate outputs), each built through the command line in this process.

Prints, per mutation kind: cases, builds that still succeed (the mutation was harmless),
one-line user errors, one-line internal errors (traceback in `<out>.error.log`), and
problems (a traceback, more than one line, a wrong exit status, something half written,
no answer within the time limit). Exit status 1 when any problem was found.

    .venv/bin/python benchmarks/mutation_fuzz.py --count 1000 --seed 0
"""
from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

import bnnforge
from bnnforge.models.topologies import build_model, randomize_batchnorm
from bnnforge.mutate import MUTATIONS, run_case

STEPS = "tidy_up,streamline,convert_to_hw,apply_folding,estimates,codegen"


def base_model(tmp: Path) -> bytes:
    torch.manual_seed(0)
    m = build_model("tfc", "unipolar")
    randomize_batchnorm(m, torch.Generator().manual_seed(0))
    return bnnforge.export(m.eval(), tmp / "tfc.onnx").read_bytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per case")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit of this process")
    a = ap.parse_args(argv)
    # a runaway allocation becomes a MemoryError (which must still be one line), not a swap storm
    limit = int(a.memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    tmp = Path(tempfile.mkdtemp(prefix="bnnforge-mutation-"))
    base = base_model(tmp)
    rows = collections.defaultdict(collections.Counter)
    problems = []
    t0 = time.perf_counter()
    for i in tqdm(range(a.count), desc="mutants", unit="model"):
        seed = a.seed + i
        kind = MUTATIONS[seed % len(MUTATIONS)]
        o = run_case(base, kind, seed, tmp, STEPS, timeout_s=a.timeout)
        r = rows[kind]
        r["cases"] += 1
        if o.problems:
            r["problems"] += 1
            problems.append(o)
        elif o.built:
            r["built"] += 1
        elif "internal error" in o.stderr:
            r["internal"] += 1
        else:
            r["user error"] += 1
    elapsed = time.perf_counter() - t0
    cols = ("cases", "built", "user error", "internal", "problems")
    print(f"\n{a.count} mutated TFC models, seeds {a.seed}..{a.seed + a.count - 1}, {elapsed:.0f} s\n")
    print("| mutation | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    total = collections.Counter()
    for kind in MUTATIONS:
        total.update(rows[kind])
        print(f"| {kind} | " + " | ".join(str(rows[kind][c]) for c in cols) + " |")
    print("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    tracebacks = sum("traceback" in p for o in problems for p in o.problems)
    partial = sum(any(p.startswith("left behind") for p in o.problems) for o in problems)
    print(f"\ntracebacks: {tracebacks}; partial outputs: {partial}; problems: {len(problems)}")
    for o in problems[:20]:
        print(f"  seed {o.seed} ({o.kind}): {'; '.join(o.problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
