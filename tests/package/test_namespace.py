"""One namespace: everything installs under `bnnforge`, shipped files travel in the
wheel, and no code reaches the source folders by their old top-level names."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("models", "hw", "sim", "finn_flows", "configs")


def _python_files():
    for folder in ("bnnforge", *SUBPACKAGES, "tests", "benchmarks"):
        yield from (REPO / folder).rglob("*.py")


def _old_imports(source: str, filename: str = "<src>") -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in SUBPACKAGES]
    return found


def test_no_import_of_old_top_level_names():
    offenders = [f"{path.relative_to(REPO)}:{line}: {name}" for path in _python_files()
                 for line, name in _old_imports(path.read_text(), str(path))]
    assert not offenders, "import through bnnforge.<subpackage> instead:\n" + "\n".join(offenders)


def test_the_scan_finds_old_imports():
    src = "from models.topologies import build_model\nimport hw.synth\nfrom bnnforge.sim import bulk\n"
    assert _old_imports(src) == [(1, "models.topologies"), (2, "hw.synth")]


def test_subpackages_resolve_to_the_repository_folders():
    import bnnforge.configs
    import bnnforge.finn_flows
    import bnnforge.hw
    import bnnforge.models
    import bnnforge.sim

    for name, mod in (("models", bnnforge.models), ("hw", bnnforge.hw), ("sim", bnnforge.sim),
                      ("finn_flows", bnnforge.finn_flows), ("configs", bnnforge.configs)):
        assert Path(mod.__file__).resolve().parent == REPO / name


def test_shipped_files_are_found_through_the_package():
    from bnnforge.resources import folding_config, method_config_dir, package_path, rtl_dir

    assert (rtl_dir() / "mvtu.v").is_file()
    assert folding_config("digits_mlp.json").is_file()
    assert (method_config_dir() / "sibnn.yaml").is_file()
    assert package_path("bnnforge.sim", "harness", "bulk_main.cpp").is_file()
    assert (package_path("bnnforge.hw", "pynq_driver") / "driver.py").is_file()


def test_caches_follow_the_environment(monkeypatch, tmp_path):
    from bnnforge.resources import cache_dir

    monkeypatch.delenv("BNNFORGE_SIM_CACHE", raising=False)
    monkeypatch.setenv("BNNFORGE_CACHE_DIR", str(tmp_path))
    assert cache_dir("sim", "BNNFORGE_SIM_CACHE") == tmp_path / "sim"
    monkeypatch.setenv("BNNFORGE_SIM_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir("sim", "BNNFORGE_SIM_CACHE") == tmp_path / "elsewhere"
    monkeypatch.delenv("BNNFORGE_SIM_CACHE")
    monkeypatch.delenv("BNNFORGE_CACHE_DIR")
    default = cache_dir("sim")
    assert "site-packages" not in str(default) and not default.is_relative_to(Path.cwd())


def source_copy(dest: Path) -> Path:
    """The project's files without build outputs: setuptools builds in the source tree
    (build/lib), and a stale file there would slip into the wheel."""
    ignore = shutil.ignore_patterns(".venv", "build", "runs", "*.egg-info", "__pycache__", ".git", ".pytest_cache")
    return Path(shutil.copytree(REPO, dest, ignore=ignore))


def build_wheel(tmp_path: Path) -> Path:
    src = source_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("bnnforge-*.whl")
    return wheel


def test_wheel_holds_only_bnnforge_and_its_data(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"bnnforge"}, sorted(tops)
    for f in ("bnnforge/hw/rtl/mvtu.v", "bnnforge/sim/harness/bulk_main.cpp",
              "bnnforge/configs/folding/lfc_bnn_pynq.json", "bnnforge/configs/methods/ftbnn.yaml",
              "bnnforge/hw/pynq_driver/driver.py", "bnnforge/models/topologies.py",
              "bnnforge/finn_flows/steps/streamline.py", "bnnforge/sim/tb/tb_network.py"):
        assert f in names, f
    assert all(f"bnnforge/hw/rtl/{p.name}" in names for p in (REPO / "hw" / "rtl").glob("*.v"))


def test_version_and_module_entry_point():
    import bnnforge

    r = subprocess.run([sys.executable, "-m", "bnnforge", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"bnnforge {bnnforge.__version__}"
