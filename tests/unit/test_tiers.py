"""A tier that cannot run is skipped on a developer's machine and fails under make test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.tiers import REQUIRE_ENV, tier_unavailable


def test_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no podman"):
        tier_unavailable("no podman")


def test_fails_when_every_tier_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"no podman .*every tier must run"):
        tier_unavailable("no podman")


def test_make_test_requires_every_tier() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert f"test: export {REQUIRE_ENV} = 1" in makefile
