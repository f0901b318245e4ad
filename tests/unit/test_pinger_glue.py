"""The pinger process's core thread and the developer API on a FakeKsr, in virtual time:
OPTIONS sent through the port, replies handed over by ``on_reply``, log lines, callbacks
(including ones that raise or cannot be imported), failed sends."""

from __future__ import annotations

import contextlib
import socket

import pytest

from ka_core.ops import binrpc
from ka_core.probe.wire import branch_for
from ka_core.state import State
from kemi import api, handler, pinger, runtime
from kemi.udp_gate import UdpGate
from tests.unit.conftest import Glue
from tests.unit.fake_ksr import FakeKsr

URI = "sip:10.0.0.1"
CALLS: list[tuple[str, str, int, object]] = []


def on_state(uri: str, state: int, user: object) -> None:
    CALLS.append(("state", uri, state, user))


def on_response(uri: str, code: int, user: object) -> None:
    CALLS.append(("response", uri, code, user))


def explode(uri: str, code: int, user: object) -> None:
    raise RuntimeError("callback bug")


@pytest.fixture(autouse=True)
def no_calls() -> None:
    CALLS.clear()


def tick(glue: Glue, p: pinger.Pinger, to: float) -> None:
    """Run the core thread's step at virtual time ``to`` (woken, so it does not sleep)."""
    glue.clock.now = to
    glue.rt.wake()
    p.run_once()


def answer(glue: Glue, code: int, source: str = "10.0.0.1", callid: str | None = None) -> int:
    """A reply to the last OPTIONS, as the SIP worker's reply route sees it."""
    glue.ksr.reply = (callid or glue.ksr.sent[-1][2], code, source)
    return pinger.on_reply(glue.rt)


def test_ping_reply_state_change_and_callbacks(glue: Glue) -> None:
    assert api.add_destination(URI, "dev", 0, 1, on_state, on_response, {"gw": 7}) == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    assert glue.ksr.sent == []
    tick(glue, p, 1000.4)
    ((ruri, from_uri, callid),) = glue.ksr.sent
    assert (ruri, from_uri) == (URI, "sip:keepalive@kamailio.org")
    assert callid.startswith(f"ka{glue.rt.token}.")
    assert answer(glue, 200) == 0, "ours: dropped before tm"
    tick(glue, p, 1000.41)
    assert "destination sip:10.0.0.1 owner dev: UNKNOWN -> UP" in glue.ksr.texts("info")
    assert CALLS == [("response", URI, 200, {"gw": 7}), ("state", URI, 1, {"gw": 7})]
    found = api.find_destination(URI, "dev")
    assert found is not None and found.state is State.UP and found.pings == 1
    assert api.destination_state("10.0.0.1:5060") is State.UP
    tick(glue, p, 1001.4)
    assert len(glue.ksr.sent) == 2, "every ping_interval"
    tick(glue, p, 1001.9)  # 500 ms timeout
    assert "destination sip:10.0.0.1 owner dev: UP -> DOWN" in glue.ksr.texts("info")
    assert CALLS[-2:] == [("response", URI, 408, {"gw": 7}), ("state", URI, 2, {"gw": 7})]
    assert api.destination_state(URI) is State.DOWN


def test_unknown_destinations_and_bad_api_input(glue: Glue) -> None:
    assert api.find_destination(URI, "dev") is None
    assert api.find_destination(None, "dev") is None  # type: ignore[arg-type]
    assert api.destination_state(URI) is None
    assert api.destination_state("sip:bad host!") is None
    assert api.del_destination(URI, "dev") == -1
    assert "del_destination:" in glue.ksr.texts("err")[-1]
    assert api.add_destination(URI, "dev", statechanged_clb=lambda *a: None) == -1
    assert "callbacks must be module-level functions" in glue.ksr.texts("err")[-1]
    assert api.add_destination(URI, "dev", response_clb="no colon") == -1
    assert "callback must be given as 'module:function'" in glue.ksr.texts("err")[-1]
    assert api.add_destination(URI, "dev", user_attr={1, 2}) == -1
    assert "user_attr is not JSON-serialisable" in glue.ksr.texts("err")[-1]
    assert api.add_destination(URI, "dev", flags="x") == -1  # type: ignore[arg-type]
    assert api.add_destination(URI, "dev", ping_interval=0.01) == -1
    assert "ping interval 0.01 s out of range" in glue.ksr.texts("err")[-1]
    assert list(glue.rt.table.records()) == [], "nothing half-added"
    assert api.add_destination(URI, "dev") == 0
    assert api.del_destination(URI, "dev") == 0


def test_a_callback_that_raises_or_cannot_be_imported_is_logged_and_probing_goes_on(
    glue: Glue,
) -> None:
    this = __name__
    assert api.add_destination(URI, "a", 0, 1, None, f"{this}:explode") == 0
    assert api.add_destination("sip:10.0.0.2", "b", 0, 1, "no.such.module:fn") == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    assert len(glue.ksr.sent) == 2
    for _, _, callid in glue.ksr.sent:
        answer(glue, 200, source="", callid=callid)
    tick(glue, p, 1000.41)
    errors = glue.ksr.texts("err")
    assert any("RuntimeError: callback bug" in e for e in errors)
    assert any("No module named 'no'" in e for e in errors)
    assert "destination sip:10.0.0.2 owner b: UNKNOWN -> UP" in glue.ksr.texts("info")
    tick(glue, p, 1001.4)
    assert len(glue.ksr.sent) == 4, "the pinger goes on"


def test_failed_send_counts_as_a_failure(glue: Glue) -> None:
    assert api.add_destination(URI, "dev", 0, 1) == 0
    p = pinger.Pinger(glue.rt)
    glue.ksr.send_rc = -1
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    assert "could not send OPTIONS to sip:10.0.0.1" in glue.ksr.texts("warn")
    tick(glue, p, 1000.41)
    assert "destination sip:10.0.0.1 owner dev: UNKNOWN -> DOWN" in glue.ksr.texts("info")


class FullSocket(UdpGate):
    def writable(self, address: str, port: int) -> bool:
        return False


def test_a_full_udp_socket_is_not_sent_to_and_says_so_once(glue: Glue) -> None:
    for i in range(1, 4):
        assert api.add_destination(f"sip:10.0.0.{i}", "dev", 0, 1) == 0
    p = pinger.Pinger(glue.rt)
    p._sender._gate = FullSocket()
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    assert glue.ksr.sent == [], "a blocking sendto would stall the pinger and its RPC"
    assert not any("could not send" in t for t in glue.ksr.texts("warn"))
    busy = [t for t in glue.ksr.texts("err") if "UDP socket has no send buffer free" in t]
    assert len(busy) == 1 and busy[0].startswith("3 OPTIONS not sent")
    tick(glue, p, 1000.41)
    assert "destination sip:10.0.0.1 owner dev: UNKNOWN -> DOWN" in glue.ksr.texts("info")


def test_reply_route_ignores_what_is_not_ours(glue: Glue) -> None:
    assert api.add_destination(URI, "dev", 0, 1) == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    callid = glue.ksr.sent[-1][2]
    assert answer(glue, 200, callid="someone-else@host") == 1, "not ours: tm's business"
    assert answer(glue, 200, callid=callid[:-1] + "z") == 1
    assert answer(glue, 100) == 0, "provisional: dropped, the timeout still runs"
    glue.ksr.reply = (callid, 200, "10.0.0.1", "z9hG4bKforged")
    assert handler.KeepaliveHandler().ksr_reply_route(None) == 0, "dropped before tm"
    assert "with our Call-ID but not our branch, from 10.0.0.1" in glue.ksr.texts("warn")[-1]
    assert answer(glue, 200, source="10.9.9.9") == 0  # from another address: ignored
    tick(glue, p, 1000.41)
    assert glue.rt.table.read(glue.rt.table.find("sip:10.0.0.1:5060")).state is State.UNKNOWN
    answer(glue, 503)
    tick(glue, p, 1000.42)
    assert "owner dev: UNKNOWN -> DOWN" in glue.ksr.texts("info")[-1]


def test_probing_stops_after_delete_counter_and_says_so(glue_factory) -> None:  # type: ignore[no-untyped-def]
    glue = glue_factory(KA_PING_INTERVAL="1", KA_PING_TIMEOUT_MS="500", KA_DELETE_COUNTER="1")
    assert api.add_destination(URI, "dev", 0, 1) == 0
    p = pinger.Pinger(glue.rt)
    for t in (1000.0, 1000.4, 1000.9, 1001.4, 1001.9, 1002.4, 1003.4):
        tick(glue, p, t)
    assert len(glue.ksr.sent) == 2
    assert any("2 consecutive failures, probing stopped" in w for w in glue.ksr.texts("warn"))


def test_setup_logs_ready_or_refuses_to_start() -> None:
    ksr = FakeKsr(defines={"KA_PING_INTERVAL": "7", "KA_DESTINATION": '"sip:10.0.0.1 10.0.0.2"'})
    rt = handler.setup(ksr)
    try:
        assert rt.table.count == 2 and rt.config.ping_interval == 7
        assert ksr.texts("info")[-1].startswith("ready: 2 destinations, ping_interval 7 s")
    finally:
        runtime.close(rt)
    for name, value in [("KA_PING_INTERVAL", "0"), ("KA_TCP_KEEPALIVE_METHOD", "magic"),
                        ("KA_DESTINATION", "sip:bad host!")]:  # fmt: skip
        bad = FakeKsr(defines={name: value})
        with pytest.raises(SystemExit):  # app_python3 logs it at debug level: no traceback
            handler.setup(bad)
        assert bad.texts("err") == [bad.texts("err")[-1]]
        assert bad.texts("err")[-1].startswith("cannot start: parameter ")


def test_reply_route_errors_are_logged_not_raised(glue: Glue) -> None:
    callid = "ka" + glue.rt.token + ".1.ffffff"
    glue.ksr.reply = (callid, 200, "10.0.0.1", branch_for(glue.rt.key, callid))
    assert handler.KeepaliveHandler().ksr_reply_route(None) == 0, "slot beyond the table"
    glue.ksr.reply = (None, None, None)
    assert handler.KeepaliveHandler().ksr_reply_route(None) == 1
    assert not glue.ksr.texts("err")


def test_the_core_step_serves_kamcmd_and_pings_what_it_adds(glue_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ka.sock"
    glue = glue_factory(KA_PING_INTERVAL="1", KA_RPC_SOCKET=f'"unix:{path}"')
    p = pinger.Pinger(glue.rt)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            client.sendall(binrpc.encode_request(3, "keepalive.add", ["sip:10.0.0.5", "k"]))
            reader = binrpc.PacketReader()
            client.setblocking(False)
            for t in (1000.0, 1000.01, 1000.02):
                tick(glue, p, t)
                with contextlib.suppress(BlockingIOError):
                    reader.feed(client.recv(4096))
            packet = reader.next_packet()
            assert packet is not None
            assert binrpc.decode_reply(packet) == (False, ["Ok. Destination added."])
        tick(glue, p, 1000.4)
        assert [s[0] for s in glue.ksr.sent] == ["sip:10.0.0.5"]
    finally:
        for server in p._servers:
            server.close()
