"""Every test the documentation names exists, so the docs never point at nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REFERENCE = re.compile(r"(?:tests/[\w/]+/)?(test_\w+\.py)(?:::(test_\w+))?")
TESTS = sorted((REPO / "tests").rglob("test_*.py"))


def references() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in DOCS:
        for match in REFERENCE.finditer(doc.read_text()):
            found.append((doc.name, match.group(1), match.group(2)))
    return found


def test_the_docs_name_tests() -> None:
    assert len(references()) > 10


@pytest.mark.parametrize(("doc", "file", "test"), references())
def test_named_test_exists(doc: str, file: str, test: str | None) -> None:
    files = [p for p in TESTS if p.name == file]
    assert files, f"{doc} names {file}, which does not exist"
    if test is not None:
        pattern = re.compile(rf"^def {test}\(", re.M)
        assert any(pattern.search(p.read_text()) for p in files), f"{doc} names {file}::{test}"
