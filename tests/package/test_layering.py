"""The import rules of the layers, read from the source (every import statement,
including those inside functions):

    base (bnnforge.errors, bnnforge.resources)  <-  models
    base  <-  hw  <-  sim  <-  finn_flows  <-  app (the rest of bnnforge/: CLI, API, demo)

`models/` knows nothing of hardware; `hw/` imports neither the compiler nor the
simulator; the golden model in `sim/` computes from the hardware-layer ONNX in its own
code, so it may read the graph format (hw) but never the compiler (finn_flows). A
package may import only what sits below it, so the packages cannot form a cycle; modules
must not form one either at import time.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"models": "models", "hw": "hw", "sim": "sim", "finn_flows": "finn_flows", "configs": "configs"}
BASE = {"bnnforge.errors", "bnnforge.resources"}
ALLOWED = {
    "base": set(),
    "models": {"base"},
    "hw": {"base"},
    "sim": {"base", "hw"},
    "finn_flows": {"base", "hw", "sim"},
    "configs": set(),
    "app": {"base", "models", "hw", "sim", "finn_flows", "configs"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] != "bnnforge":
        parts = ["bnnforge", *parts]
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    return "app"


def imports(path: Path, module: str, mods) -> list[tuple[int, str, bool]]:
    """(line, imported project module, at module scope) for every import in the file;
    `from package import name` counts the submodule when `name` is one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found = set()

    def resolve(name):
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update((child.lineno, resolve(a.name), top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base[:len(base) - child.level + (1 if is_pkg else 0)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for a in child.names:
                    sub = f"{target}.{a.name}"
                    found.add((child.lineno, sub if sub in mods else resolve(target), top))
            scoped = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            visit(child, top and not scoped)

    visit(tree, True)
    return sorted((line, m, top) for line, m, top in found if m in mods)


def project_modules() -> dict[str, Path]:
    mods = {}
    for folder in ("bnnforge", *FOLDERS):
        for path in (REPO / folder).rglob("*.py"):
            mods[module_name(path)] = path
    return mods


def violations(mods: dict[str, Path]) -> list[str]:
    out = []
    for mod, path in sorted(mods.items()):
        src = layer_of(mod)
        for line, target, _ in imports(path, mod, mods):
            dst = layer_of(target)
            if dst != src and dst not in ALLOWED[src]:
                out.append(f"{path.relative_to(REPO)}:{line}: {src} imports {target} ({dst})")
    return out


def module_cycles(mods: dict[str, Path]) -> list[list[str]]:
    graph = {}
    for mod, path in mods.items():
        deps = set()
        for _, target, top in imports(path, mod, mods):
            if top and target != mod:
                deps.add(target)
        graph[mod] = deps
    cycles, state = [], {}

    def dfs(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                dfs(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m, [])
    return cycles


def test_layers_import_only_what_sits_below_them():
    assert not violations(project_modules()), "\n".join(violations(project_modules()))


def test_no_module_import_cycles():
    cycles = module_cycles(project_modules())
    assert not cycles, cycles


def test_the_rules_catch_violations_and_cycles(tmp_path):
    global REPO
    (tmp_path / "hw").mkdir()
    (tmp_path / "finn_flows").mkdir()
    (tmp_path / "hw" / "__init__.py").write_text("")
    codegen, builder = tmp_path / "hw" / "codegen.py", tmp_path / "finn_flows" / "builder.py"
    codegen.write_text("def f():\n    from bnnforge.finn_flows.builder import build\n")
    builder.write_text("from bnnforge.hw import codegen\n")
    mods = {"bnnforge.hw": tmp_path / "hw" / "__init__.py", "bnnforge.hw.codegen": codegen,
            "bnnforge.finn_flows.builder": builder}
    saved, REPO = REPO, tmp_path
    try:
        assert violations(mods) == ["hw/codegen.py:2: hw imports bnnforge.finn_flows.builder (finn_flows)"]
        assert module_cycles(mods) == []  # the import inside f() runs later: no import-time cycle
        codegen.write_text("from bnnforge.finn_flows.builder import build\n")
        assert module_cycles(mods) == [["bnnforge.finn_flows.builder", "bnnforge.hw.codegen",
                                        "bnnforge.finn_flows.builder"]]
    finally:
        REPO = saved
