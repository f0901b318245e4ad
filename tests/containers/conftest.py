"""The compose stack for the container tier, brought up and down by pytest-docker.

pytest-docker's defaults are for Docker Compose; under podman-compose (docs/containers.md):
setup is ``up -d`` (``up --wait`` never returns there), readiness comes from
``wait_until_responsive`` on kamcmd inside the Kamailio container, and cleanup is
``down -v --remove-orphans`` (plain ``down -v`` leaves a ``run`` container's pod behind).
A stack that an earlier, killed run left behind is removed first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_docker.plugin import Services

from tests.containers.compose import (
    COMPOSE_FILE,
    PING_INTERVAL_S,
    PING_TIMEOUT_MS,
    PROJECT,
    PodmanUnavailable,
    Stack,
    base_image,
    check_podman,
    compose_command,
    machine_lock,
    podman_env,
)
from tests.harness.tiers import tier_unavailable

READY_TIMEOUT_S = 120.0
DOWN = "--profile test down -v --remove-orphans -t 2"


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """podman checked, the machine lock held, the base image built: the compose env."""
    try:
        check_podman()
    except PodmanUnavailable as exc:
        tier_unavailable(f"podman cannot run containers here: {exc}")
    with machine_lock():
        yield {
            "CONTAINERS_CONF": podman_env()["CONTAINERS_CONF"],
            "BASE_IMAGE": base_image(),
            "KA_PING_INTERVAL": str(PING_INTERVAL_S),
            "KA_PING_TIMEOUT_MS": str(PING_TIMEOUT_MS),
        }


@pytest.fixture(scope="session")
def docker_compose_command(stack_env: dict[str, str]) -> str:
    return compose_command(stack_env)


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return [DOWN, "--profile test build", "up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return [DOWN]


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, stack_env: dict[str, str], docker_services: Services
) -> Iterator[Stack]:
    st = Stack(env=podman_env() | stack_env)

    def kamcmd_answers() -> bool:
        try:
            st.kamcmd("keepalive.list")
        except (RuntimeError, LookupError):
            return False
        return True

    docker_services.wait_until_responsive(check=kamcmd_answers, timeout=READY_TIMEOUT_S, pause=0.5)
    failed_before = request.session.testsfailed
    yield st
    if request.session.testsfailed > failed_before:
        for service in ("kamailio", "peer-up", "peer-flaky"):
            try:
                print(f"==== podman logs ({service}) ====\n{st.logs(service)[-20000:]}")
            except (LookupError, RuntimeError) as exc:
                print(f"==== {service}: {exc}")
