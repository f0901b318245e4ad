"""Selection against a real Kamailio: three gateways in a group, one silent (DOWN); ``ka_select``
never picks it, an INVITE to the first pick that answers 503 fails over through ``ka_next``
in failure_route to the next live one, and ``rr`` alternates among the live ones (KEMI and
native cfg; docs/routing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import REPO, Kamailio
from tests.harness.sipclient import request
from tests.integration.test_keepalive import wait_state
from tests.integration.test_native import native_cfg, py_exec
from tests.integration.test_native import wait_state as native_wait_state
from tests.integration.test_passive import short_tm_timers
from tests.peers.uas import Request, ScriptedUAS

pytestmark = pytest.mark.integration


def fails_invites(req: Request) -> int:
    return 503 if req.method == "INVITE" else 200


def gateways(kam: Kamailio, uas_factory, add) -> tuple[list[str], list[ScriptedUAS]]:
    """First: answers OPTIONS, fails INVITEs with 503; second: silent (DOWN); third: fine."""
    peers = [uas_factory() for _ in range(3)]
    peers[0].set_behaviour(fails_invites)
    peers[1].blackhole()
    uris = [f"sip:{p.host}:{p.port}" for p in peers]
    for uri in uris:
        add(uri)
    return uris, peers


def invite(kam: Kamailio, alg: str = "first") -> int:
    ruri = f"sip:sel@{kam.ip}:{kam.port}"
    return request(kam.ip, kam.port, "INVITE", ruri, {"X-Group": "gw", "X-Alg": alg}).code


def test_select_skips_the_silent_gateway_fails_over_and_rr_alternates(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 1}, children=1)
    uris, peers = gateways(
        kam, uas_factory, lambda u: result_of(kam, "ka_add_destination", u, "gw")
    )
    for uri, state in zip(uris, (1, 2, 1), strict=True):
        wait_state(kam, uri, state, owner="gw")
    assert [result_of(kam, "ka_select", "gw") for _ in range(3)] == [f"1 {uris[0]}"] * 3
    rr = [result_of(kam, "ka_select", "gw", "rr") for _ in range(4)]
    assert rr == [f"1 {uris[0]}", f"1 {uris[2]}"] * 2, "the silent one is never picked"
    assert result_of(kam, "ka_select", "gw", "rr", "$var(gw)") == f"1 {uris[0]}"
    assert invite(kam) == 200, "503 from the first, then the third answers"
    assert (peers[0].count("INVITE"), peers[1].count("INVITE"), peers[2].count("INVITE")) == (
        1, 0, 1,
    )  # fmt: skip
    kam.wait_log(rf"failure_route: next {uris[2]} pid")
    assert result_of(kam, "ka_select", "gw", "random") == "-1"
    assert result_of(kam, "ka_select", "nobody") == "-1"
    assert result_of(kam, "ka_select", "gw", "first", "du") == "-1"
    kam.wait_log(r"ka_select: unknown algorithm 'random' \(first, rr, weight, rtt\)")
    kam.wait_log(r"ka_select: no destinations in group 'nobody'")
    kam.wait_log(r"ka_select: not a pseudo-variable name \(e.g. \$du, \$var\(gw\)\): 'du'")


def test_panic_selects_among_all_of_a_group_set_by_its_setting(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 1, "KA_SELECT_PANIC_PERCENT": 50})
    peer = uas_factory()
    peer.blackhole()
    uri = f"sip:{peer.host}:{peer.port}"
    assert result_of(kam, "ka_add_destination", uri, "trunks", "group=gw;weight=2") == "1"
    wait_state(kam, uri, 2, owner="trunks")
    assert result_of(kam, "ka_select", "gw") == f"1 {uri}", "panic: all of the group"
    assert result_of(kam, "ka_select", "trunks") == "-1", "its group is its setting's"


NATIVE_ROUTE = r"""
route[KA_SELECT] {
	python_exec("ka_select", "$hdr(X-Group) $hdr(X-Alg)");
	if ($rc < 0) {
		sl_send_reply("503", "No gateway");
		exit;
	}
	t_on_failure("KA_NEXT");
	t_relay();
	exit;
}

failure_route[KA_NEXT] {
	python_exec("ka_next");
	if ($rc < 0) {
		exit;
	}
	xlog("L_INFO", "native failure_route: next $du\n");
	t_on_failure("KA_NEXT");
	t_relay();
}
"""


def test_native_cfg_select_and_failover(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    cfg = native_cfg(tmp_path)
    text = cfg.read_text().replace(
        "request_route {\n", 'request_route {\n\tif ($rU == "sel") {\n\t\troute(KA_SELECT);\n\t}\n'
    )
    cfg.write_text(text + NATIVE_ROUTE)
    kam = kamailio_factory(
        defines={"KA_PING_INTERVAL": 1}, script=REPO / "kemi" / "native.py", cfg_file=cfg
    )
    uris, peers = gateways(
        kam, uas_factory, lambda u: py_exec(kam, "ka_add_destination", f"{u} gw")
    )
    for uri, state in zip(uris, (1, 2, 1), strict=True):
        native_wait_state(kam, uri, "gw", state)
    assert invite(kam) == 200
    assert [p.count("INVITE") for p in peers] == [1, 0, 1]
    kam.wait_log(rf"native failure_route: next {uris[2]}")
    assert invite(kam, "bogus") == 503
    kam.wait_log(r"ka_select: unknown algorithm 'bogus'")


def test_a_swallowed_invite_fails_over_from_tms_timer_process(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    """tm's timer ends the first branch with a local 408 and runs failure_route in its own
    process: the candidates travel with the transaction (the xavp), not in a worker."""
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 60}, cfg_edit=short_tm_timers)
    peers = [uas_factory() for _ in range(2)]
    peers[0].set_behaviour(lambda req: None if req.method == "INVITE" else 200)
    uris = [f"sip:{p.host}:{p.port}" for p in peers]
    for uri in uris:
        assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
        wait_state(kam, uri, 1, owner="gw")
    assert invite(kam) == 200
    assert peers[0].count("INVITE") >= 1, "with tm's retransmissions"
    assert peers[1].count("INVITE") == 1
    selected = kam.wait_log(rf"select: {uris[0]} pid \d+").rsplit(" ", 1)[1]
    failed_over = kam.wait_log(rf"failure_route: next {uris[1]} pid \d+").rsplit(" ", 1)[1]
    assert selected != failed_over, "failure_route ran in tm's timer process"
