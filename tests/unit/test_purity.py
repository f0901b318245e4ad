"""ka_core stays sans-I/O: no Kamailio, sockets, processes, threads or clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "ka_core"
BANNED_MODULES = {
    "KSR", "socket", "os", "threading", "subprocess", "select", "random", "mmap", "importlib",
    "ctypes", "signal", "multiprocessing", "asyncio",
}  # fmt: skip
BANNED_CALLS = {"time", "monotonic", "perf_counter", "sleep", "time_ns", "monotonic_ns"}


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
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
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            taken = {a.name for a in node.names}
            assert not taken & BANNED_CALLS, f"{path.name}:{node.lineno} imports the clock"
        if isinstance(node, ast.Name) and node.id == "__import__":
            raise AssertionError(f"{path.name}:{node.lineno} imports dynamically")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
        ):
            assert node.attr not in BANNED_CALLS, f"{path.name}:{node.lineno} reads the clock"


@pytest.mark.parametrize(
    "source",
    ["from time import monotonic", "import importlib", "import os.path", "x = __import__('os')",
     "import time\ntime.monotonic()", "from time import sleep as nap"],
)  # fmt: skip
def test_the_check_catches_each_way_in(source: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.py"
    bad.write_text(source + "\n")
    with pytest.raises(AssertionError):
        test_core_module_is_pure(bad)
