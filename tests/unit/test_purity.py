"""ka_core stays sans-I/O: no Kamailio, sockets, processes, threads or clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "ka_core"
BANNED_MODULES = {"KSR", "socket", "os", "threading", "subprocess", "select", "random", "mmap"}
BANNED_CALLS = {"time", "monotonic", "perf_counter", "sleep", "time_ns", "monotonic_ns"}


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        assert not names & BANNED_MODULES, f"{path.name}:{node.lineno} imports {names}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
        ):
            assert node.attr not in BANNED_CALLS, f"{path.name}:{node.lineno} reads the clock"
