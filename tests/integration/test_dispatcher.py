"""The dispatcher bridge in a real Kamailio with dispatcher.so: dispatcher's destinations are
probed by ka-kemi and ``dispatcher.list`` follows ka-kemi's states, through reloads too."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import Kamailio
from tests.integration.test_misconfig import check_says, refused

pytestmark = pytest.mark.integration

LOAD = 'loadmodule "tm.so"\n'


def with_dispatcher(list_file: Path) -> Callable[[str], str]:
    def edit(cfg: str) -> str:
        assert LOAD in cfg
        return cfg.replace(
            LOAD,
            LOAD + 'loadmodule "dispatcher.so"\n'
            f'modparam("dispatcher", "list_file", "{list_file}")\n',
            1,
        )

    return edit


def ds_flags(kam: Kamailio) -> dict[tuple[int, str], str]:
    """(group, URI) -> dispatcher's FLAGS, from Kamailio's own ``dispatcher.list``."""
    out = kam.ctl("dispatcher.list")
    found: dict[tuple[int, str], str] = {}
    for block in out.split("SET: {")[1:]:
        group = int(re.search(r"ID: (\d+)", block).group(1))  # type: ignore[union-attr]
        for uri, flags in re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", block):
            found[(group, uri)] = flags
    return found


def wait_for(what: Callable[[], object], expected: object, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := what()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{got!r} != {expected!r} after {timeout} s")
        time.sleep(0.1)


def ours(kam: Kamailio) -> dict[str, str]:
    """URI -> state of the bridge's destinations (owner dispatcher), from keepalive.list."""
    out = kam.kamcmd("keepalive.list")
    rows = re.findall(r"uri: (\S+)\s+owner: dispatcher\s+.*?state: (\d)", out, re.S)
    return dict(rows)


def test_dispatcher_list_follows_ka_kemis_states_and_reloads(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    up, silent, later = uas_factory(), uas_factory(), uas_factory()
    silent.set_behaviour(lambda req: None)
    a, b, c = (f"sip:{u.host}:{u.port}" for u in (up, silent, later))
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(f"1 {a} 0 0\n1 {b} 0 0\n2 {a} 0 0\n")
    kam = kamailio_factory(
        {"KA_DISPATCHER_BRIDGE": 1, "KA_DISPATCHER_SYNC_S": 1},
        cfg_edit=with_dispatcher(list_file),
    )
    wait_for(lambda: ours(kam), {a: "1", b: "2"})
    wait_for(lambda: ds_flags(kam), {(1, a): "AX", (1, b): "IX", (2, a): "AX"})
    assert any(r.method == "OPTIONS" for r in up.requests), "ka-kemi probes them"

    up.set_behaviour(lambda req: None)
    wait_for(lambda: ds_flags(kam), {(1, a): "IX", (1, b): "IX", (2, a): "IX"})
    up.set_behaviour(lambda req: 200)
    wait_for(lambda: ds_flags(kam), {(1, a): "AX", (1, b): "IX", (2, a): "AX"})

    up.set_behaviour(lambda req: None)
    wait_for(lambda: ours(kam), {a: "2", b: "2"})
    list_file.write_text(f"1 {a} 0 0\n3 {c} 0 0\n")
    assert "error" not in kam.ctl("dispatcher.reload").lower()  # every entry active again
    wait_for(lambda: ours(kam), {a: "2", c: "1"})
    wait_for(lambda: ds_flags(kam), {(1, a): "IX", (3, c): "AX"})
    silent.set_behaviour(lambda req: 200)  # b is gone: nobody probes it any more
    assert "Traceback" not in kam.log()


def test_the_bridge_without_dispatcher_loaded_is_refused(
    kamailio_factory: KamailioFactory,
) -> None:
    kam = kamailio_factory({"KA_DISPATCHER_BRIDGE": 1}, start=False)
    refused(kam, "config error: module dispatcher is not loaded")
    check_says(kam, "dispatcher is not loaded")
