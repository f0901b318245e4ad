"""The compose stack for the container tier: up once per session, down at the end, always."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.containers.compose import PING_INTERVAL_S, PING_TIMEOUT_MS, PodmanUnavailable, Stack
from tests.harness.tiers import tier_unavailable


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    st = Stack(
        env_overrides={
            "KA_PING_INTERVAL": str(PING_INTERVAL_S),
            "KA_PING_TIMEOUT_MS": str(PING_TIMEOUT_MS),
        }
    )
    failed_before = request.session.testsfailed
    try:
        st.up()
    except PodmanUnavailable as exc:
        tier_unavailable(f"podman cannot run containers here: {exc}")
    except BaseException:
        st.down()
        raise
    try:
        yield st
    finally:
        if request.session.testsfailed > failed_before:
            for service in ("kamailio", "peer-up", "peer-flaky"):
                try:
                    print(f"==== podman logs ({service}) ====\n{st.logs(service)[-20000:]}")
                except (LookupError, RuntimeError) as exc:
                    print(f"==== {service}: {exc}")
        st.down()
        print(f"container tier timings (s): { {k: round(v, 1) for k, v in st.timings.items()} }")
