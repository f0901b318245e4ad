"""State changes reaching the script (``KA_EVENT_CALLBACK``) and the developer API's
callbacks with their round trip, and what a SIP worker's reply route does for destinations
with a socket or a health policy of their own; on a FakeKsr, in virtual time."""

from __future__ import annotations

import select

import pytest

from ka_core.script.callbacks import DestinationEvent
from ka_core.settings import socket_tag
from ka_core.state import State
from kemi import api, pinger, wakeup
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.test_pinger_glue import tick

URI = "sip:10.0.0.1"
FAST = {"KA_PING_INTERVAL": "1", "KA_PING_TIMEOUT_MS": "500"}
CALLS: list[tuple[object, ...]] = []


class Handler:
    """The script's handler object, as ``mod_init`` returns it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, DestinationEvent]] = []

    def ka_event(self, evname: str, ev: DestinationEvent) -> None:
        self.events.append((evname, ev))


def state_with_rtt(uri: str, state: int, user: object, rtt_ms: float) -> None:
    CALLS.append(("state", uri, state, user, rtt_ms))


def response_with_kwargs(uri: str, code: int, user: object, **extra: object) -> None:
    CALLS.append(("response", uri, code, user, extra))


def state_plain(uri: str, state: int, user: object) -> None:
    CALLS.append(("state", uri, state, user))


@pytest.fixture(autouse=True)
def no_calls() -> None:
    CALLS.clear()


def answer(
    glue: Glue, code: int, callid: str | None = None, at: float | None = None,
    source: str = "10.0.0.1",
) -> int:  # fmt: skip
    """A reply to the last OPTIONS (or to ``callid``), seen by a SIP worker at ``at``."""
    if at is not None:
        glue.clock.now = at
    glue.ksr.reply = (callid or glue.ksr.sent[-1][2], code, source)
    return pinger.on_reply(glue.rt)


def woken(glue: Glue) -> bool:
    """Whether the wake pipe holds a byte for the pinger (then drained)."""
    ready, _, _ = select.select([glue.rt.wake_read_fd], [], [], 0)
    if ready:
        wakeup.drain(glue.rt.wake_read_fd)
    return bool(ready)


def up_then_down_then_up(glue: Glue, p: pinger.Pinger) -> None:
    """First ping at 1000.4 answered 200 in 10 ms, the next one times out, the third is
    answered 200 in 50 ms."""
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    answer(glue, 200, at=1000.41)
    tick(glue, p, 1000.41)
    tick(glue, p, 1001.4)
    tick(glue, p, 1001.9)
    tick(glue, p, 1002.4)
    answer(glue, 200, at=1002.45)
    tick(glue, p, 1002.45)


def test_script_method_gets_down_and_up_with_code_and_rtt(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event")
    handler = Handler()
    glue.rt.add(URI, "own")
    p = pinger.Pinger(glue.rt, handler)
    up_then_down_then_up(glue, p)
    assert handler.events == [
        ("keepalive:dst-down", DestinationEvent(URI, "own", 1, 2, 408, 0.0, None)),
        ("keepalive:dst-up", DestinationEvent(URI, "own", 2, 1, 200, 50.0, None)),
    ], "the first state (UNKNOWN -> UP) is not delivered"
    assert "destination sip:10.0.0.1 owner own: UNKNOWN -> UP" in glue.ksr.texts("info")


def test_event_initial_delivers_the_first_state_too(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event", KA_EVENT_INITIAL="1")
    handler = Handler()
    glue.rt.add(URI, "own")
    p = pinger.Pinger(glue.rt, handler)
    up_then_down_then_up(glue, p)
    names = [name for name, _ in handler.events]
    assert names == ["keepalive:dst-up", "keepalive:dst-down", "keepalive:dst-up"]
    assert handler.events[0][1] == DestinationEvent(URI, "own", 0, 1, 200, 10.0, None)


def test_degraded_is_delivered_with_its_own_name(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event", KA_DEGRADED_MS="30")
    handler = Handler()
    glue.rt.add(URI, "own")
    p = pinger.Pinger(glue.rt, handler)
    up_then_down_then_up(glue, p)  # the last reply took 50 ms
    assert [(n, e.old_state, e.new_state) for n, e in handler.events] == [
        ("keepalive:dst-down", 1, 2), ("keepalive:dst-degraded", 2, 3),
    ]  # fmt: skip


def test_user_data_of_the_developer_api_reaches_the_event(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event", KA_EVENT_INITIAL="1")
    handler = Handler()
    assert api.add_destination(URI, "dev", user_attr={"gw": 7}) == 0
    p = pinger.Pinger(glue.rt, handler)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    tick(glue, p, 1000.9)
    assert [e.user for _, e in handler.events] == [{"gw": 7}]


def test_many_changes_in_one_step_are_each_delivered_once_in_order(
    glue_factory: GlueFactory,
) -> None:
    glue = glue_factory(KA_PING_INTERVAL="10", KA_PING_TIMEOUT_MS="500",
                        KA_EVENT_CALLBACK="ka_event")  # fmt: skip
    handler = Handler()
    uris = [f"sip:10.0.{i // 50}.{i % 50 + 1}" for i in range(100)]
    for uri in uris:
        glue.rt.add(uri, "bulk")
    p = pinger.Pinger(glue.rt, handler)
    tick(glue, p, 1000.0)  # first pings spread over 1000.0-1009.9
    tick(glue, p, 1009.95)
    assert len(glue.ksr.sent) == 100
    for _, _, callid in glue.ksr.sent:
        answer(glue, 200, callid=callid, source="")
    tick(glue, p, 1009.96)
    assert handler.events == [], "first states are not delivered"
    tick(glue, p, 1019.95)  # the whole second round at once
    second = [ruri for ruri, _, _ in glue.ksr.sent[100:]]
    assert sorted(second) == sorted(uris) and handler.events == []
    tick(glue, p, 1020.45)  # ... so it times out in one step
    assert [e.uri for _, e in handler.events] == second, "in the order they were probed"
    assert {(name, e.code) for name, e in handler.events} == {("keepalive:dst-down", 408)}
    tick(glue, p, 1020.9)
    assert len(handler.events) == 100, "exactly once each"


def test_a_missing_method_is_logged_once_and_probing_goes_on(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="on_keepalive", KA_EVENT_INITIAL="1")
    glue.rt.add(URI, "own")
    p = pinger.Pinger(glue.rt, Handler())
    up_then_down_then_up(glue, p)
    errors = [e for e in glue.ksr.texts("err") if "event_callback" in e]
    assert errors == [
        "event_callback 'on_keepalive': the script's handler has no such method; "
        "state changes are only logged"
    ]
    assert len(glue.ksr.sent) == 3
    assert "destination sip:10.0.0.1 owner own: DOWN -> UP" in glue.ksr.texts("info")


def test_a_method_that_raises_is_logged_and_probing_goes_on(glue_factory: GlueFactory) -> None:
    class Broken:
        def ka_event(self, evname: str, ev: DestinationEvent) -> None:
            raise RuntimeError("script bug")

    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event")
    glue.rt.add(URI, "own")
    p = pinger.Pinger(glue.rt, Broken())
    up_then_down_then_up(glue, p)
    assert sum("RuntimeError: script bug" in e for e in glue.ksr.texts("err")) == 2
    assert len(glue.ksr.sent) == 3
    assert glue.rt.table.read(glue.rt.table.find("sip:10.0.0.1:5060")).state is State.UP


def test_a_failing_api_callback_does_not_hide_the_change_from_the_script(
    glue_factory: GlueFactory,
) -> None:
    """BUG (kemi/pinger.py ``Pinger._act``): the developer API callback runs first, and when
    it raises (or cannot be imported) ``EventSink.deliver`` is never reached, so the
    script's event method misses that change."""
    glue = glue_factory(**FAST, KA_EVENT_CALLBACK="ka_event", KA_EVENT_INITIAL="1")
    handler = Handler()
    assert api.add_destination(URI, "dev", statechanged_clb="no.such.module:cb") == 0
    p = pinger.Pinger(glue.rt, handler)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    answer(glue, 200, at=1000.41)
    tick(glue, p, 1000.41)
    assert any("No module named 'no'" in e for e in glue.ksr.texts("err"))
    assert [name for name, _ in handler.events] == ["keepalive:dst-up"]


# -- developer API callbacks and the round trip ------------------------------------------


def test_api_callbacks_that_declare_rtt_ms_get_it(glue: Glue) -> None:
    assert api.add_destination(URI, "dev", 0, 1, state_with_rtt, response_with_kwargs, 5) == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    answer(glue, 200, at=1000.4125)
    tick(glue, p, 1000.42)
    assert CALLS == [
        ("response", URI, 200, 5, {"rtt_ms": 12.5}),
        ("state", URI, 1, 5, 12.5),
    ]
    tick(glue, p, 1001.4)
    tick(glue, p, 1001.9)
    assert CALLS[-2:] == [("response", URI, 408, 5, {"rtt_ms": 0.0}), ("state", URI, 2, 5, 0.0)]


def test_api_callbacks_without_rtt_ms_get_the_three_c_arguments(glue: Glue) -> None:
    assert api.add_destination(URI, "dev", 0, 1, state_plain, None, "u") == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    answer(glue, 200, at=1000.41)
    tick(glue, p, 1000.41)
    assert CALLS == [("state", URI, 1, "u")]
    assert not glue.ksr.texts("err")


# -- the reply route: socket tags and wake-ups ----------------------------------------------


def first_ping(glue: Glue, settings: str = "") -> pinger.Pinger:
    glue.rt.add(URI, "own", settings=settings)
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    woken(glue)
    return p


def test_ping_leaves_from_the_destination_socket_and_from_uri(glue: Glue) -> None:
    first_ping(glue, "socket=udp:127.0.0.1:5060;from=sip:probe@example.com")
    assert glue.ksr.sockets == ["udp:127.0.0.1:5060"]
    assert glue.ksr.sent[-1][:2] == (URI, "sip:probe@example.com")


def test_reply_route_tags_the_local_socket_for_a_socket_destination(glue: Glue) -> None:
    first_ping(glue, "socket=udp:127.0.0.1:5060")
    glue.ksr.local = ("127.0.0.1", 5060)
    answer(glue, 200)
    (entry,) = glue.rt.table.drain()
    assert entry.gen == socket_tag("127.0.0.1", 5060)


def test_reply_route_does_not_tag_without_a_socket_setting(glue: Glue) -> None:
    first_ping(glue)
    glue.ksr.local = ("192.0.2.1", 9)
    answer(glue, 200)
    (entry,) = glue.rt.table.drain()
    assert entry.gen == 0


@pytest.mark.parametrize(
    ("local", "state"), [(("127.0.0.1", 5060), State.UP), (("127.0.0.1", 5070), State.DOWN)]
)
def test_only_a_reply_on_the_destination_socket_counts(
    glue: Glue, local: tuple[str, int], state: State
) -> None:
    p = first_ping(glue, "socket=udp:127.0.0.1:5060")
    glue.ksr.local = local
    answer(glue, 200, at=1000.41)
    tick(glue, p, 1000.41)
    tick(glue, p, 1000.9)  # the ping's timeout
    assert glue.rt.table.read(glue.rt.table.find(URI + ":5060")).state is state


def test_a_state_changing_reply_wakes_the_pinger_with_the_default_policy(glue: Glue) -> None:
    first_ping(glue)
    answer(glue, 200)
    assert woken(glue)


@pytest.mark.parametrize("code", [200, 503])
def test_custom_policy_destinations_never_wake_the_pinger(glue: Glue, code: int) -> None:
    p = first_ping(glue, "down_after=2")
    answer(glue, code)
    assert not woken(glue)
    tick(glue, p, 1000.5)  # applied at the next tick all the same
    rec = glue.rt.table.read(glue.rt.table.find(URI + ":5060"))
    assert rec.last_code == code


def test_a_module_health_policy_turns_wake_ups_off(glue_factory: GlueFactory) -> None:
    glue = glue_factory(**FAST, KA_UP_AFTER="2")
    first_ping(glue)
    answer(glue, 503)
    assert not woken(glue)
