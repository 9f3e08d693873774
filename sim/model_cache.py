"""A size cap on the cache of compiled Verilator models (``sim/`` and ``bulk/``).

Every distinct design, parameter set and harness compiles to its own entry
(``<root>/<top>_<key>/``, 5-50 MB each), and a day of tests made tens of gigabytes.
After each new build the cache is brought back under a cap by deleting whole entries,
least recently used first. The cap is ``$BNNFORGE_CACHE_MAX_BYTES`` (bytes, or with a
K/M/G/T suffix in powers of 1024; default 4 GiB), shared by the simulation and the
bulk-harness caches.

Concurrency (pytest -n 2, or a build and a ``bnnforge sim`` side by side): each entry
has two lock files beside it.

- ``<entry>.lock``: held exclusively while the entry is being built (sim/runner.py,
  sim/bulk.py).
- ``<entry>.use``: held shared for as long as a process uses the entry (from before its
  build until its simulation ends; :func:`in_use`).

The evictor takes both exclusively *without waiting*; an entry it cannot lock is in
use or being built and is skipped. It renames the entry away before deleting it, so a
half-deleted entry never looks built: the next user simply builds it again. The lock
files stay (empty files; deleting a lock file another process may be about to open
would let two processes hold "the" lock at once). One evictor runs at a time
(``<root>/.evict.lock``); a process that finds another evicting leaves it to that one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

from bnnforge.errors import BnnforgeError
from bnnforge.resources import cache_dir

__all__ = ["CAP_ENV", "DEFAULT_CAP_BYTES", "cap_bytes", "default_roots", "in_use", "mark_used",
           "record_size", "evict", "cache_usage"]

CAP_ENV = "BNNFORGE_CACHE_MAX_BYTES"
DEFAULT_CAP_BYTES = 4 * 1024 ** 3
STAMP = ".built"
SIZE_FILE = ".size"
_SUFFIX = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def cap_bytes() -> int:
    """The cap from ``$BNNFORGE_CACHE_MAX_BYTES`` (e.g. ``4G``, ``500M``, ``1073741824``)."""
    raw = os.environ.get(CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_CAP_BYTES
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", raw, flags=re.IGNORECASE)
    if not m:
        raise BnnforgeError(f"${CAP_ENV}: {raw!r} is not a size (bytes, or a number with K, M, G or T)")
    return int(float(m.group(1)) * _SUFFIX[m.group(2).upper()])


def default_roots() -> list[Path]:
    """The two model caches the cap covers (same resolution as sim/verilator_env.py and sim/bulk.py)."""
    return [cache_dir("sim", "BNNFORGE_SIM_CACHE"), cache_dir("bulk", "BNNFORGE_BULK_CACHE")]


def _lock_path(entry: Path, kind: str) -> Path:
    return entry.parent / f"{entry.name}.{kind}"


@contextlib.contextmanager
def _flock(path: Path, mode: int, blocking: bool = True):
    """Yield True while holding the lock, False (non-blocking only) when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def in_use(entry: Path):
    """Keep *entry* from eviction while the block runs (a shared lock; many users at once)."""
    with _flock(_lock_path(Path(entry), "use"), fcntl.LOCK_SH):
        yield


def mark_used(entry: Path) -> None:
    """Record a use of a built entry: its stamp's mtime is the LRU order."""
    with contextlib.suppress(OSError):
        os.utime(Path(entry) / STAMP)


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def record_size(entry: Path) -> int:
    """Measure a freshly built entry once; eviction reads the figure instead of walking it."""
    n = _tree_bytes(entry)
    with contextlib.suppress(OSError):
        (Path(entry) / SIZE_FILE).write_text(f"{n}\n")
    return n


def _entry_bytes(entry: Path) -> int:
    try:
        return int((entry / SIZE_FILE).read_text())
    except (OSError, ValueError):
        return record_size(entry) if (entry / STAMP).exists() else _tree_bytes(entry)


def _entries(root: Path) -> list[Path]:
    """Model entries: folders with a build lock beside them (not the shared runtime objects)."""
    try:
        return [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                and _lock_path(d, "lock").exists()]
    except FileNotFoundError:
        return []


def _last_used(entry: Path) -> float:
    for p in (entry / STAMP, entry):
        with contextlib.suppress(OSError):
            return p.stat().st_mtime
    return 0.0


def cache_usage(roots: Iterable[Path] | None = None) -> dict:
    """{"entries", "bytes"} over the model entries of *roots* (default: both model caches)."""
    es = [e for r in (roots or default_roots()) for e in _entries(Path(r))]
    return {"entries": len(es), "bytes": sum(_entry_bytes(e) for e in es)}


def _remove(entry: Path) -> bool:
    """Delete one entry unless another process uses or builds it; True when deleted."""
    with _flock(_lock_path(entry, "use"), fcntl.LOCK_EX, blocking=False) as free:
        if not free:
            return False
        with _flock(_lock_path(entry, "lock"), fcntl.LOCK_EX, blocking=False) as idle:
            if not idle or not entry.is_dir():
                return False
            trash = entry.parent / f".evicted-{entry.name}-{os.getpid()}"
            os.rename(entry, trash)  # atomic: nobody sees a half-deleted entry as built
            shutil.rmtree(trash, ignore_errors=True)
            return True


def evict(roots: Iterable[Path] | None = None, cap: int | None = None, keep: Iterable[Path] = ()) -> dict:
    """Delete least recently used entries of *roots* until they hold at most *cap* bytes.

    Entries in use, being built, or in *keep* are never deleted (so the cache may stay
    above the cap while they are). Returns {"evicted", "freed_bytes", "bytes", "skipped_busy"};
    "evicted" is None when another process was already evicting."""
    roots = sorted({Path(r) for r in (roots or default_roots())})
    cap = cap_bytes() if cap is None else int(cap)
    keep = {Path(k).resolve() for k in keep}
    with contextlib.ExitStack() as stack:
        for r in roots:
            if not stack.enter_context(_flock(r / ".evict.lock", fcntl.LOCK_EX, blocking=False)):
                return {"evicted": None, "freed_bytes": 0, "bytes": None, "skipped_busy": 0}
        items = sorted(((_last_used(e), _entry_bytes(e), e) for r in roots for e in _entries(r)),
                       key=lambda t: t[0])
        total = sum(size for _, size, _ in items)
        evicted, freed, busy = [], 0, 0
        for _, size, e in items:
            if total <= cap:
                break
            if e.resolve() in keep:
                continue
            if _remove(e):
                evicted.append(e.name)
                freed += size
                total -= size
            else:
                busy += 1
    return {"evicted": evicted, "freed_bytes": freed, "bytes": total, "skipped_busy": busy}
