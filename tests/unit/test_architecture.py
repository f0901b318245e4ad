"""The shape of the code (docs/internals.md): rooms by concern, arrows one way, small modules.
Each rule is checked on the real tree and on a planted violation, so it cannot pass empty."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("ka_core", "kemi")
MAX_LINES = 400
ROOMS = ("probe", "store", "cluster", "names", "ops", "config", "script", "route")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, source: str, known: Iterable[str]) -> set[str]:
    """The product modules ``name`` imports at run time (``TYPE_CHECKING`` blocks excluded:
    they cannot form a cycle at import)."""
    known = set(known)
    out: set[str] = set()
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known and m != name}


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    return {name: imports_of(name, text, sources) for name, text in sources.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first, three colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        colour[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in colour and (found := visit(node)):
            return found
    return None


def real_sources() -> dict[str, str]:
    return {name: path.read_text() for name, path in modules().items()}


def test_no_import_cycle_anywhere() -> None:
    assert cycle(graph(real_sources())) is None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {
        "ka_core.a": "from ka_core.b import x\n",
        "ka_core.b": "import ka_core.c\n",
        "ka_core.c": "from ka_core import a\n",
        "ka_core": "",
    }
    assert cycle(graph(planted)) == ["ka_core.a", "ka_core.b", "ka_core.c", "ka_core.a"]
    guarded = dict(planted, **{"ka_core.c": "if TYPE_CHECKING:\n    from ka_core import a\n"})
    assert cycle(graph(guarded)) is None


def test_ka_core_never_imports_kemi() -> None:
    edges = graph(real_sources())
    for name, deps in edges.items():
        if name.startswith("ka_core"):
            assert not [d for d in deps if d.startswith("kemi")], name


def test_the_rooms_exist_and_the_top_level_holds_only_shared_vocabulary() -> None:
    for room in ROOMS:
        assert (ROOT / "ka_core" / room / "__init__.py").is_file(), room
    top = sorted(p.stem for p in (ROOT / "ka_core").glob("*.py"))
    assert len(top) <= 12, top


def test_no_module_over_the_line_limit() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}


FLOORS = {
    "vocabulary": 0,
    "store": 1,
    "probe": 2,
    "names": 2,
    "ops": 2,
    "script": 2,
    "route": 2,
    "cluster": 3,
    "node": 4,
    "config": 4,
}
"""The picture in docs/internals.md: a room imports only itself and rooms on lower floors.
The store holds the bytes and imports none of its readers; ``node`` steps the machines and
``config`` reads the cfg for all of them, so nothing below imports either."""


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in ROOMS:
        return parts[1]
    return "node" if parts[1:] == ["node"] else "vocabulary"


def floor_violations(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    def upward(name: str, dep: str) -> bool:
        if not dep.startswith("ka_core."):
            return False
        mine, theirs = room_of(name), room_of(dep)
        return mine != theirs and FLOORS[theirs] >= FLOORS[mine]

    found = {
        name: {d for d in deps if upward(name, d)}
        for name, deps in edges.items()
        if name.startswith("ka_core.")
    }
    return {name: deps for name, deps in found.items() if deps}


def test_every_room_imports_only_rooms_below_it() -> None:
    assert floor_violations(graph(real_sources())) == {}


def test_an_upward_import_is_found() -> None:
    planted = dict(real_sources())
    planted["ka_core.store.planted"] = (
        "from ka_core.ops.metrics import render\nimport ka_core.probe.health\n"
        "from ka_core.state import State\n"
    )
    planted["ka_core.probe.planted"] = "from ka_core.names.machine import Names\n"
    planted["ka_core.planted"] = "from ka_core.store.table import SharedTable\n"
    assert floor_violations(graph(planted)) == {
        "ka_core.store.planted": {"ka_core.ops.metrics", "ka_core.probe.health"},
        "ka_core.probe.planted": {"ka_core.names.machine"},
        "ka_core.planted": {"ka_core.store.table"},
    }
