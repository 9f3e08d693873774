"""The README and docs/ stay true to the code: every relative link resolves, and every
command shown in a README code block names a program, subcommand and options that exist."""
from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    # GitHub's rule: lower case, drop punctuation except - and _, spaces to -
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _broken_links(md: Path) -> list[str]:
    broken = []
    for target in LINK.findall(md.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, frag = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(target)
        elif frag and dest.suffix == ".md":
            anchors = {_anchor(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
            if frag not in anchors:
                broken.append(target)
    return broken


@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_relative_links_resolve(md):
    assert not _broken_links(md), f"{md.relative_to(REPO)}: broken links {_broken_links(md)}"


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "there.md").write_text("# A title\n")
    md = tmp_path / "x.md"
    md.write_text("[ok](there.md) [ok](there.md#a-title) [bad](missing.md) [bad](there.md#nope) [web](https://x.y)")
    assert _broken_links(md) == ["missing.md", "there.md#nope"]


def _readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line:
                cmds.append(shlex.split(line))
    return cmds


def _problems(argv: list[str]) -> list[str]:
    from bnnforge.cli import build_parser

    prog, args = argv[0], argv[1:]
    if prog == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M)
        return [f"make {t}: no such target" for t in args if t not in targets]
    if prog.endswith("bnnforge"):
        sub = build_parser()._subparsers._group_actions[0].choices.get(args[0])
        if sub is None:
            return [f"bnnforge {args[0]}: no such subcommand"]
        known = {o for a in sub._actions for o in a.option_strings}
        return [f"bnnforge {args[0]} {a}: no such option" for a in args if a.startswith("--") and a not in known]
    if prog.endswith("python"):
        if args[0] == "-m":
            return [] if importlib.util.find_spec(args[1]) else [f"python -m {args[1]}: no such module"]
        script = REPO / args[0]
        if not script.is_file():
            return [f"{args[0]}: no such file"]
        return [f"{args[0]} {a}: option not in the script" for a in args[1:]
                if a.startswith("--") and a not in script.read_text()]
    if prog == "ray":  # the cluster extra's own CLI
        if importlib.util.find_spec("ray") is None:
            return ["ray: not installed by the project (the cluster extra)"]
        return [] if args[0] in ("start", "stop", "status") else [f"ray {args[0]}: not a ray command"]
    return [f"{prog}: a command the README should not show (unknown program)"]


def test_readme_commands_exist():
    cmds = _readme_commands()
    assert len(cmds) >= 4
    problems = [p for c in cmds for p in _problems(c)]
    assert not problems, problems


def test_the_command_check_can_fail():
    assert _problems(["make", "nope"]) == ["make nope: no such target"]
    assert _problems([".venv/bin/bnnforge", "build", "--no-such-flag"]) == ["bnnforge build --no-such-flag: no such option"]
    assert _problems([".venv/bin/bnnforge", "frobnicate"]) == ["bnnforge frobnicate: no such subcommand"]
    assert _problems([".venv/bin/python", "benchmarks/nope.py"]) == ["benchmarks/nope.py: no such file"]
