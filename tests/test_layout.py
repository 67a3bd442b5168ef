"""The house: every import looks down a floor, and no modules import each other in a circle.

Floors, bottom to top (README "Reading order"): layers/ and data/; model/; core/learn/ (the
training room); the shared figures, progress and saved-model report at core/ level; the rooms
that use training (core/inside/, core/compress/, core/experiments/); core/serve/;
core/commands/; main.py. A module may import its own room and any floor below it. Imports
inside functions count too: they are imports all the same.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("layers", "data", "model", "core")

# (room, floor): the longest matching prefix of a module's name gives its room.
ROOMS = {
    "layers": 0,
    "data": 0,
    "model": 1,
    "core.learn": 2,
    "core.plots": 3,
    "core.report": 4,
    "core.progress": 4,
    "core.inside": 5,
    "core.compress": 5,
    "core.export": 5,
    "core.experiments": 5,
    "core.serve": 6,
    "core.commands": 7,
    "main": 8,
}


def room_of(module):
    """The room of a dotted module name: its longest prefix in ROOMS (None: not ours)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in ROOMS:
            return ".".join(parts[:end])
    return None


def module_name(path):
    """``core/learn/train.py`` -> ``core.learn.train``; a package's __init__ is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules():
    """{module name: path} of the project's code (tests, notebooks and benchmarks aside)."""
    files = [ROOT / "main.py"] + [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return {module_name(p): p for p in files if p.read_text().strip()}  # empty __init__: no code


def imports(path):
    """The project modules a file imports, with the line of each import (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(name, node.lineno) for name in names if room_of(name)]
    return found


MODULES = our_modules()


def test_every_module_of_the_project_has_a_room():
    assert not [name for name in MODULES if name and room_of(name) is None]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_look_down_or_within_the_room(name):
    room = room_of(name)
    upward = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {target} ({room_of(target)})"
        for target, line in imports(MODULES[name])
        if room_of(target) != room and ROOMS[room_of(target)] >= ROOMS[room]
    ]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    graph = {
        name: {target for target, _ in imports(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }
    done, on_path = set(), []

    def visit(name):  # depth first; a name met again on the current path closes a circle
        if name in on_path:
            circle = on_path[on_path.index(name) :] + [name]
            pytest.fail("import circle: " + " -> ".join(circle))
        if name in done:
            return
        on_path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_check_sees_an_upward_import(tmp_path):
    # The learning room importing a figure module above it must be caught.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from core.plots import save_figure\n")
    targets = [room_of(t) for t, _ in imports(bad)]
    assert "core.plots" in targets and ROOMS["core.plots"] > ROOMS["core.learn"]
