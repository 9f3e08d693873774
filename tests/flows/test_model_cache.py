"""The Verilator model cache stays under its size cap: least recently used entries go
first, whole; entries another process uses or builds, and the one just built, stay."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.sim import model_cache

KIB = 1024


def _entry(root: Path, name: str, kib: int, last_used: float) -> Path:
    """A built entry as sim/runner.py leaves it: folder, stamp, size record, build lock."""
    e = root / name
    e.mkdir(parents=True)
    (e / "Vtop").write_bytes(os.urandom(kib * KIB))
    model_cache.record_size(e)
    (e / model_cache.STAMP).write_text("ok\n")
    os.utime(e / model_cache.STAMP, (last_used, last_used))
    (root / f"{name}.lock").touch()
    return e


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "sim"
    for i, name in enumerate(["a_0000", "b_0000", "c_0000", "d_0000"]):
        _entry(r, name, 64, 1_000_000 + 100 * i)  # a is the least recently used
    (r / "_runtime_abc").mkdir()  # shared runtime objects: no lock beside them, never evicted
    (r / "_runtime_abc" / "verilated.o").write_bytes(b"x" * 100)
    return r


def _present(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


class _Holder:
    """Another process holding a lock on an entry until closed (what a concurrent pytest
    worker does while it simulates or builds)."""

    def __init__(self, code: str):
        self.p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code) + "\nprint('ready', flush=True)\n"
                                   "sys.stdin.readline()\n"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def test_cap_from_environment(monkeypatch):
    monkeypatch.delenv(model_cache.CAP_ENV, raising=False)
    assert model_cache.cap_bytes() == 4 * 1024 ** 3
    for raw, n in [("1073741824", 1 << 30), ("4G", 4 << 30), ("500m", 500 << 20), ("1.5GiB", 3 << 29), ("0", 0)]:
        monkeypatch.setenv(model_cache.CAP_ENV, raw)
        assert model_cache.cap_bytes() == n
    monkeypatch.setenv(model_cache.CAP_ENV, "lots")
    with pytest.raises(BnnforgeError, match=r"\$BNNFORGE_CACHE_MAX_BYTES: 'lots' is not a size"):
        model_cache.cap_bytes()


def test_least_recently_used_go_first_until_under_the_cap(root):
    one = model_cache.cache_usage([root])["bytes"] // 4
    model_cache.mark_used(root / "a_0000")  # a used just now: b and c are now the oldest
    r = model_cache.evict([root], cap=2 * one)
    assert r["evicted"] == ["b_0000", "c_0000"] and r["freed_bytes"] == 2 * one and r["bytes"] == 2 * one
    assert _present(root) == ["_runtime_abc", "a_0000", "d_0000"]
    assert not [p for p in root.iterdir() if p.name.startswith(".evicted-")]
    assert model_cache.evict([root], cap=2 * one)["evicted"] == []  # already under the cap


def test_entries_in_use_being_built_or_kept_stay(root):
    use = _Holder(f"""
        import sys
        from pathlib import Path
        from bnnforge.sim import model_cache
        held = model_cache.in_use(Path({str(root / 'a_0000')!r}))
        held.__enter__()
        """)
    building = _Holder(f"""
        import sys
        from pathlib import Path
        from bnnforge.sim.runner import file_lock
        held = file_lock(Path({str(root / 'b_0000.lock')!r}))
        held.__enter__()
        """)
    try:
        r = model_cache.evict([root], cap=0, keep=[root / "d_0000"])
        assert r["evicted"] == ["c_0000"] and r["skipped_busy"] == 2
        assert _present(root) == ["_runtime_abc", "a_0000", "b_0000", "d_0000"]
        assert (root / "a_0000" / "Vtop").is_file() and (root / "b_0000" / model_cache.STAMP).is_file()
    finally:
        use.close()
        building.close()
    assert model_cache.evict([root], cap=0)["evicted"] == ["a_0000", "b_0000", "d_0000"]
    assert _present(root) == ["_runtime_abc"]


def test_one_evictor_at_a_time(root):
    other = _Holder(f"""
        import sys
        from pathlib import Path
        from bnnforge.sim.runner import file_lock
        held = file_lock(Path({str(root / '.evict.lock')!r}))
        held.__enter__()
        """)
    try:
        assert model_cache.evict([root], cap=0)["evicted"] is None
        assert len(_present(root)) == 5
    finally:
        other.close()


@pytest.mark.rtl
@pytest.mark.slow  # three Verilator builds in a fresh cache: about a minute
def test_real_builds_evicted_and_rebuilt(tmp_path, monkeypatch):
    """Two Verilator builds under a 1-byte cap: building the second evicts the first
    (the new one is kept although it alone exceeds the cap); a test on the first then
    rebuilds it and passes."""
    from bnnforge.sim.runner import build, rtl_sources, run_test
    from bnnforge.sim.tb.cases import scenario

    root = tmp_path / "cache"
    monkeypatch.setenv(model_cache.CAP_ENV, "1")
    first = build(rtl_sources("stream_skid"), "stream_skid", {"WIDTH": 4}, build_root=root)
    assert (first / model_cache.STAMP).is_file() and int((first / model_cache.SIZE_FILE).read_text()) > 0
    second = build(rtl_sources("stream_skid"), "stream_skid", {"WIDTH": 5}, build_root=root)
    assert not first.exists() and (second / model_cache.STAMP).is_file()
    beats = list(range(16))
    case = tmp_path / "case.json"
    case.write_text(__import__("json").dumps({"scenarios": [scenario("random", beats, beats, 0.3, 0.3, 1)],
                                              "full_rate": scenario("full_rate", beats, beats),
                                              "rate_checks": []}))
    res = run_test(rtl_sources("stream_skid"), "stream_skid", "bnnforge.sim.tb.tb_streams", {"WIDTH": 4},
                   workdir=tmp_path, extra_env={"TB_CASE": str(case)}, build_root=root)
    assert len(res.tests) >= 2 and not res.failed
    assert first.exists() and not second.exists()
