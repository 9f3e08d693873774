"""Where bnnforge finds its shipped files and keeps its caches.

Shipped files (RTL library, bulk-simulation harness, foldings, method configs, PYNQ
driver) are package data, located through ``importlib.resources`` so that a checkout,
an editable install and a wheel all resolve them the same way.

Caches (compiled Verilator models) go to the user cache directory
(``platformdirs``), or under ``$BNNFORGE_CACHE_DIR`` when set; the simulation caches
keep their finer overrides ``$BNNFORGE_SIM_CACHE`` and ``$BNNFORGE_BULK_CACHE``.
Nothing is ever written into site-packages or the current directory by default.

A leaf module: it imports nothing of bnnforge, so every layer may use it.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def package_path(package: str, *parts: str) -> Path:
    """Filesystem path of a file shipped in *package* (e.g. ``"bnnforge.hw", "rtl"``)."""
    # bnnforge installs unzipped (setuptools wheels and editable installs), so the
    # Traversable is a real directory; Path() keeps callers free of resource APIs.
    return Path(str(files(package).joinpath(*parts)))


def rtl_dir() -> Path:
    return package_path("bnnforge.hw", "rtl")


def folding_config(name: str) -> Path:
    """A shipped FINN-format folding, ``configs/folding/<name>``."""
    return package_path("bnnforge.configs", "folding", name)


def method_config_dir() -> Path:
    return package_path("bnnforge.configs", "methods")


def cache_dir(kind: str, env_var: str | None = None) -> Path:
    """Cache folder for *kind* (``sim``, ``bulk``): ``$<env_var>`` if set, else
    ``$BNNFORGE_CACHE_DIR/<kind>``, else the user cache directory's ``bnnforge/<kind>``."""
    if env_var and os.environ.get(env_var):
        return Path(os.environ[env_var])
    if os.environ.get("BNNFORGE_CACHE_DIR"):
        return Path(os.environ["BNNFORGE_CACHE_DIR"]) / kind
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("bnnforge", appauthor=False)) / kind
