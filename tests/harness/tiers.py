"""What a test does when its tier (network namespaces, containers) cannot run here.

A developer's ``make itest`` on a laptop skips such tests.  ``make test`` (the README's test
command, which CI runs) sets ``KA_REQUIRE_ALL_TIERS=1``: there a tier that cannot run fails
the run instead of leaving it green with a whole tier silently missing.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "KA_REQUIRE_ALL_TIERS"


def tier_unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: every tier must run)", pytrace=False)
    pytest.skip(reason)
