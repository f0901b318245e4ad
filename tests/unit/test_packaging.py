"""What the wheel and the .deb ship, and the one version every part of ka-kemi reports."""

from __future__ import annotations

import re
import threading
import tomllib
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ka_core.ops.commands import RpcCommands
from ka_core.ops.metrics import PingerMetrics, render
from ka_core.store.table import SharedTable, buffer_size
from ka_core.version import __version__

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def product_packages() -> list[str]:
    """Every directory with an ``__init__.py`` under ka_core and kemi, as dotted names."""
    found = []
    for top in ("ka_core", "kemi"):
        for init in (REPO / top).rglob("__init__.py"):
            found.append(".".join(init.parent.relative_to(REPO).parts))
    return sorted(found)


def test_the_wheel_lists_every_product_package_and_nothing_else() -> None:
    assert sorted(SETUPTOOLS["packages"]) == product_packages()
    assert SETUPTOOLS["include-package-data"] is False
    assert not {p.split(".")[0] for p in SETUPTOOLS["packages"]} - {"ka_core", "kemi"}


def test_the_shipped_example_files_exist() -> None:
    for files in SETUPTOOLS["data-files"].values():
        assert all((REPO / f).is_file() for f in files), files
    examples = (REPO / "debian/ka-kemi.examples").read_text().split()
    assert examples and all((REPO / f).is_file() for f in examples)


def test_one_version_everywhere() -> None:
    assert re.fullmatch(r"0\.\d+\.\d+", __version__)
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "ka_core.version.__version__"}
    first_line = (REPO / "debian/changelog").read_text().splitlines()[0]
    assert first_line.startswith(f"ka-kemi ({__version__}) "), first_line
    released = re.findall(r"^## (\d+\.\d+\.\d+)", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert released[0] == __version__


def commands() -> RpcCommands:
    buf = bytearray(buffer_size(4, 16))
    SharedTable.format_buffer(buf, 4, 16)
    return RpcCommands(SharedTable(buf, threading.Lock()), lambda: 1_700_000_000.0)


def test_keepalive_version_is_one_line_like_core_version() -> None:
    assert commands().call("keepalive.version", []) == [f"ka-kemi {__version__}"]
    # core.version takes no parameters and ignores any it is given; so does this
    assert commands().call("keepalive.version", ["x", 1]) == [f"ka-kemi {__version__}"]


def test_metrics_carry_a_build_info_series() -> None:
    text = render(PingerMetrics(0, 4, 0, 0.0, 0.0, False, 5), [])
    (family,) = [f for f in text_string_to_metric_families(text) if f.name.endswith("build_info")]
    assert family.name == "kamailio_keepalive_build_info"
    assert [(s.labels, s.value) for s in family.samples] == [({"version": __version__}, 1.0)]
