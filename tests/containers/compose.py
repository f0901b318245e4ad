"""What the container tier needs beyond pytest-docker, which brings the stack up and down.

pytest-docker runs ``<compose command> -f docker-compose.yml -p <project> <subcommand>`` for
setup and cleanup (tests/containers/conftest.py).  This module provides what it does not:
the compose command itself (.venv-ctr's podman-compose 1.6.0, with the base image built from
the machine's apt sources by docker/build-base.sh and ``CONTAINERS_CONF`` in its
environment), a machine-wide lock (the subnet is fixed: one stack at a time), and ``Stack``,
which finds containers by their compose labels (never by name: podman-compose and Docker
Compose name them differently) and runs kamcmd inside them.

Every podman call gets ``CONTAINERS_CONF=docker/containers.conf`` unless the caller set one:
lowered ulimits and runc, which this kind of host needs (docs/containers.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
VENV_CTR = REPO / ".venv-ctr"
PODMAN_COMPOSE_VERSION = "1.6.0"
PROJECT = "ka-kemi-ci"
LOCK_PATH = Path("/tmp/ka-kemi-containers.lock")
LOCK_TIMEOUT_S = 900.0
COMMAND_TIMEOUT_S = 300.0
# The tier runs faster than the compose file's defaults (2 s / 1000 ms).
PING_INTERVAL_S = 1
PING_TIMEOUT_MS = 1000


class PodmanUnavailable(RuntimeError):
    """podman is missing or cannot run containers on this machine."""


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "docker" / "containers.conf"))
    return env


def run(
    cmd: list[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env or podman_env(), cwd=REPO
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} -> exit {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def check_podman() -> None:
    """Raise PodmanUnavailable unless podman can start a container at all."""
    if shutil.which("podman") is None:
        raise PodmanUnavailable("podman is not installed (docker/ci-tier.sh installs it)")
    try:
        proc = run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], check=False,
                   timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PodmanUnavailable(f"podman info failed: {exc}") from None
    if proc.returncode != 0:
        raise PodmanUnavailable(f"podman info failed: {proc.stderr.strip()[-500:]}")


def podman_compose() -> Path:
    """The pinned podman-compose, installed into .venv-ctr when missing."""
    exe = VENV_CTR / "bin" / "podman-compose"
    if not exe.exists():
        run(["python3", "-m", "venv", str(VENV_CTR)])
        run([str(VENV_CTR / "bin" / "pip"), "install", "-q",
             f"podman-compose=={PODMAN_COMPOSE_VERSION}"])  # fmt: skip
    return exe


def base_image() -> str:
    """$BASE_IMAGE if set, else the local mmdebstrap base (built only when missing)."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    proc = run(["bash", str(REPO / "docker" / "build-base.sh")], timeout=900)
    return proc.stdout.strip().splitlines()[-1]


def compose_command(env: dict[str, str]) -> str:
    """The shell command pytest-docker prefixes to its subcommands."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    return f"env {assigns} {shlex.quote(str(podman_compose()))}"


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One stack per machine at a time (fixed subnet)."""
    with LOCK_PATH.open("a") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another container tier holds {LOCK_PATH}") from None
                time.sleep(1)
        yield


@dataclass
class Stack:
    """The running compose stack of docker-compose.yml (started by pytest-docker)."""

    env: dict[str, str]
    project: str = PROJECT

    # -- commands --------------------------------------------------------------------------

    def compose(
        self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(podman_compose()), "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        return run(cmd, check=check, timeout=timeout, env=self.env)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], check=check, env=self.env)

    def container(self, service: str) -> str:
        """The id of the service's container, found by its compose labels."""
        out = self.podman(
            "ps", "-a", "--format", "{{.ID}}",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        if len(out) != 1:
            raise LookupError(f"service {service}: containers {out}")
        return out[0]

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", self.container(service), *cmd, check=check)

    def ip(self, service: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        return self.podman("inspect", "--format", fmt, self.container(service)).stdout.split()[0]

    def logs(self, service: str) -> str:
        proc = self.podman("logs", self.container(service), check=False)
        return proc.stdout + proc.stderr

    # -- keepalive -------------------------------------------------------------------------

    def kamcmd(self, *args: str) -> str:
        """``kamcmd <args>`` run inside the Kamailio container (its default socket)."""
        return self.exec("kamailio", "kamcmd", *args).stdout

    def states(self) -> dict[str, int]:
        return parse_kamcmd_list(self.kamcmd("keepalive.list"))

    def wait_state(self, uri: str, state: int, timeout: float) -> float:
        """Seconds until ``keepalive.list`` shows ``uri`` in ``state``; AssertionError after."""
        t0 = time.monotonic()

        def reached() -> bool:
            try:
                return self.states().get(uri) == state
            except RuntimeError:  # Kamailio still starting: its socket is not there yet
                return False

        seen = wait_for(reached, timeout)
        if not seen:
            raise AssertionError(f"{uri} not in state {state} after {timeout} s: {self.states()}")
        return time.monotonic() - t0


def parse_kamcmd_list(text: str) -> dict[str, int]:
    """``{uri: state}`` from kamcmd's ``keepalive.list`` text."""
    states = {}
    for block in text.split("}"):
        uri = re.search(r"^\s*uri: (\S+)", block, re.M)
        state = re.search(r"^\s*state: (\d+)", block, re.M)
        if uri and state:
            states[uri.group(1)] = int(state.group(1))
    return states


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
