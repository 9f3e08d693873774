"""Share Verilator's model-independent runtime objects between builds.

verilated.o, verilated_vpi.o, verilated_threads.o and verilated_dpi.o depend
only on the Verilator install and the compiler flags, not on the design, yet
they are most of the C++ compile time of a small model. They are copied
(then touched, so that make sees them newer than the freshly generated
Vtop.mk they depend on) from a cache into each fresh
build directory before make, and saved into the cache after the first build.

Usage: python sim/_objcache.py {restore|save} CACHE_DIR BUILD_DIR
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

RUNTIME = ("verilated", "verilated_vpi", "verilated_threads", "verilated_dpi")


def restore(cache: Path, bdir: Path, names=RUNTIME) -> None:
    if not all((cache / f"{n}.o").exists() for n in names):
        return
    for n in names:
        for ext in (".o", ".d"):
            src = cache / f"{n}{ext}"
            if src.exists():
                shutil.copy2(src, bdir / src.name)
                # newer than the freshly generated Vtop.mk they depend on
                os.utime(bdir / src.name)


def save(cache: Path, bdir: Path, names=RUNTIME) -> None:
    if all((cache / f"{n}.o").exists() for n in names):
        return
    if not all((bdir / f"{n}.o").exists() for n in names):
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".objcache"))
    for n in names:
        for ext in (".o", ".d"):
            src = bdir / f"{n}{ext}"
            if src.exists():
                shutil.copy2(src, tmp / src.name)
    try:
        os.rename(tmp, cache)  # atomic publish; loses harmlessly to a concurrent saver
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    op, cache, bdir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"restore": restore, "save": save}[op](cache, bdir)
