"""Shared fixtures: a real Kamailio per test, stopped by PID and checked for crashes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.harness.kamailio import Kamailio
from tests.harness.sipclient import Reply, request

pytest_plugins = ["tests.peers.fixtures"]

# `make fuzz` sets KA_HYPOTHESIS_EXAMPLES=10000: every property test at full strength.
settings.register_profile(
    "ka", max_examples=int(os.environ.get("KA_HYPOTHESIS_EXAMPLES", "100")), deadline=None
)
settings.load_profile("ka")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


KamailioFactory = Callable[..., Kamailio]


@pytest.fixture
def kamailio_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KamailioFactory]:
    """``kamailio_factory(defines={...}, start=True)`` -> a running Kamailio."""
    started: list[Kamailio] = []

    def make(defines: dict[str, str | int] | None = None, start: bool = True, **kw: object):
        kam = Kamailio(tmp_path / f"kam{len(started)}", dict(defines or {}), **kw)  # type: ignore[arg-type]
        started.append(kam)
        return kam.start() if start else kam

    yield make
    problems = []
    for kam in started:
        try:
            code = kam.stop()
        except RuntimeError as exc:
            problems.append(str(exc))
            continue
        crashes = kam.crash_lines() if "pinger started" in kam.log() else []
        if crashes:
            problems.append("crash/traceback lines in the log:\n" + "\n".join(crashes))
        elif code not in (0, None) and kam.proc is not None and "pinger started" in kam.log():
            problems.append(f"kamailio exit code {code}")
    failed = getattr(request.node, "rep_call", None)
    if (failed is not None and failed.failed) or problems:
        for kam in started:
            print(f"==== {kam.log_path} ====\n{kam.log()[-20000:]}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def kam(kamailio_factory: KamailioFactory) -> Kamailio:
    return kamailio_factory()


def call_fn(
    kam: Kamailio, fn: str, *args: object, transport: str = "udp", ints: bool = False
) -> Reply:
    """Call a script function inside a SIP worker of ``kam`` (see scripts/ka_routes.py)."""
    headers = {"X-Fn": fn}
    for i, arg in enumerate(args, 1):
        headers[f"X-Arg{i}"] = "<none>" if arg is None else str(arg)
    if ints:
        headers["X-Int"] = "1"
    return request(kam.ip, kam.port, "MESSAGE", f"sip:call@{kam.ip}:{kam.port}", headers, transport)


def result_of(kam: Kamailio, fn: str, *args: object, **kw: object) -> str:
    reply = call_fn(kam, fn, *args, **kw)  # type: ignore[arg-type]
    assert reply.code == 200, reply.raw
    return reply.header("x-result") or ""
