"""``ka_report`` (KEMI and native) on a FakeKsr: what it queues for the pinger, its bad
input, and ``ka_is_alive`` for an ejected destination (4, or 2 with ``KA_EJECT_AS down``)."""

from __future__ import annotations

import pytest

from ka_core.state import State
from ka_core.store.ring import KIND_OUTCOME, outcome
from ka_core.uri import parse_uri
from kemi import functions, pinger
from kemi.functions import ka_add_destination, ka_is_alive, ka_report
from kemi.native import NativeHandler
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.test_pinger_glue import answer, tick

URI = "sip:10.0.0.1"
MSG = object()


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    functions._slot_cache.clear()


def eject(glue: Glue, uri: str = URI) -> None:
    """What the pinger writes when passive health ejects a destination."""
    table = glue.rt.table
    slot = table.find(parse_uri(uri).key)
    assert table.write_state(slot, table.hot(slot)[0], State.DOWN, 1.0, ejected=(True, 1, 9, False))


def test_a_report_is_queued_for_the_pinger_with_its_slot_and_code(glue: Glue) -> None:
    assert ka_add_destination(URI, "gw") == 1
    assert ka_add_destination(URI, "other") == 1
    glue.rt.table.drain()
    assert ka_report(URI, 503) == 1
    assert ka_report("10.0.0.1:5060", "408", "other") == 1, "text code and an owner"
    entries = glue.rt.table.drain()
    assert [(e.kind, e.code) for e in entries] == [(KIND_OUTCOME, 503), (KIND_OUTCOME, 408)]
    gw, other = (glue.rt.table.find(parse_uri(URI).key, o) for o in ("gw", "other"))
    assert [e.slot for e in entries] == [gw, other]


@pytest.mark.parametrize(
    ("args", "logged"),
    [
        ((URI, 199), "ka_report: not a final reply code (200-699): 199"),
        ((URI, 700), "ka_report: not a final reply code (200-699): 700"),
        ((URI, "5o3"), "ka_report: not a final reply code (200-699): '5o3'"),
        ((URI, True), "ka_report: not a final reply code (200-699): True"),
        ((URI, None), "ka_report: not a final reply code (200-699): None"),
        (("sip:", 503), "ka_report: "),
        ((URI, 503, " "), "ka_report: owner must be a non-empty string"),
        ((URI,), "ka_report: wrong arguments: "),
    ],
)
def test_bad_input_is_minus_one_and_logged(
    glue: Glue, args: tuple[object, ...], logged: str
) -> None:
    ka_add_destination(URI, "gw")
    glue.rt.table.drain()
    assert ka_report(*args) == -1  # type: ignore[arg-type]
    assert any(t.startswith(logged) for t in glue.ksr.texts("err")), glue.ksr.texts("err")
    assert glue.rt.table.drain() == []


def test_an_unknown_destination_is_minus_one_without_a_log_line(glue: Glue) -> None:
    assert ka_report("sip:10.9.9.9", 503) == -1
    assert ka_add_destination(URI, "gw") == 1
    assert ka_report(URI, 503, "nobody") == -1
    assert glue.ksr.texts("err") == []


def test_a_full_queue_drops_the_report_and_says_so(glue: Glue) -> None:
    ka_add_destination(URI, "gw")
    table = glue.rt.table
    while table.push(outcome(0, 0, 503, 0.0, 0.0, 0), table.ring_capacity // 2):
        pass
    assert ka_report(URI, 503) == -1
    assert "ka_report: pinger queue more than half full: report dropped" in glue.ksr.texts("err")
    assert table.push_reply(1, 200, 0.0, 0.0), "half the ring stays free for ping replies"


def test_is_alive_says_4_for_an_ejected_destination(glue: Glue) -> None:
    handler = NativeHandler()
    ka_add_destination(URI, "gw")
    assert ka_is_alive(URI) == 1
    eject(glue)
    assert ka_is_alive(URI) == 4 and ka_is_alive(URI) == 4, "the slow path and the cache"
    functions._slot_cache.clear()
    assert handler.ka_is_alive(MSG, URI) == 4


def test_eject_as_down_says_2(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_PASSIVE="1", KA_EJECT_AS="down")
    ka_add_destination(URI, "gw")
    eject(glue)
    assert ka_is_alive(URI) == 2 and ka_is_alive(URI) == 2


def test_native_report_and_its_usage(glue: Glue) -> None:
    handler = NativeHandler()
    ka_add_destination(URI, "gw")
    glue.rt.table.drain()
    assert handler.ka_report(MSG, f"{URI} 503") == 1
    assert handler.ka_report(MSG, f"{URI} 503 gw") == 1
    assert handler.ka_report(MSG, f"{URI} <null>") == -1, "$T_reply_code unset"
    usage = (
        'ka_report: use python_exec("ka_report", "<uri> <code> [<owner>|* [<retry-after>]]"), not '
    )
    for arg in (None, "", URI, f"{URI} 503 gw 5 extra"):
        assert handler.ka_report(MSG, arg) == -1
        assert glue.ksr.texts("err")[-1] == usage + repr(arg)
    assert [e.code for e in glue.rt.table.drain()] == [503, 503]


def test_a_ping_reply_with_retry_after_holds_the_destination(glue_factory: GlueFactory) -> None:
    glue = glue_factory(
        KA_PING_INTERVAL="1", KA_PING_TIMEOUT_MS="500", KA_RETRY_AFTER_MAX="10",
        KA_RETRY_AFTER_CODES="503,480",
    )  # fmt: skip
    assert ka_add_destination(URI, "gw") == 1
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    glue.ksr.reply_headers = {"Retry-After": "30;duration=60"}
    assert answer(glue, 480) == 0
    tick(glue, p, 1000.41)
    rec = glue.rt.table.read(glue.rt.table.find(parse_uri(URI).key))
    assert (rec.state, rec.ejected, rec.by_retry_after) == (State.DOWN, True, True)
    assert 9 <= rec.out_until - glue.rt.wall() <= 10, "capped at KA_RETRY_AFTER_MAX"
    assert ka_is_alive(URI) == 4


def test_retry_after_off_by_default_is_not_even_read(glue: Glue) -> None:
    assert ka_add_destination(URI, "gw") == 1
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    glue.ksr.reply_headers = {"Retry-After": "30"}
    glue.ksr.reply_header = None  # type: ignore[assignment,method-assign]
    assert answer(glue, 503) == 0, "KA_RETRY_AFTER_MAX 0: the header is not read"
    tick(glue, p, 1000.41)
    rec = glue.rt.table.read(glue.rt.table.find(parse_uri(URI).key))
    assert (rec.state, rec.ejected) == (State.DOWN, False)


def test_ka_report_passes_retry_after(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_RETRY_AFTER_MAX="60")
    handler = NativeHandler()
    ka_add_destination(URI, "gw")
    glue.rt.table.drain()
    assert ka_report(URI, 503, "", "120 (maintenance)") == 1
    assert ka_report(URI, 503, "gw", "soon") == 1, "an unreadable header is ignored"
    assert handler.ka_report(MSG, f"{URI} 503 * 7") == 1
    assert [(e.code, e.seq) for e in glue.rt.table.drain()] == [(503, 120), (503, 0), (503, 7)]
