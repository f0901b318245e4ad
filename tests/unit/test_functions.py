"""Script functions on a FakeKsr: return codes, errors, and the per-worker slot cache of
``ka_is_alive`` never answering for a destination that was deleted, flushed or re-added."""

from __future__ import annotations

import pytest

from ka_core.state import State
from ka_core.uri import parse_uri
from kemi import functions
from kemi.functions import ka_add_destination, ka_del_destination, ka_is_alive
from tests.unit.conftest import Glue

URI = "sip:10.0.0.1"


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    functions._slot_cache.clear()


def set_state(glue: Glue, uri: str, state: State) -> None:
    """What the pinger writes when a probe ends."""
    table = glue.rt.table
    slot = table.find(_key(uri))
    gen = table.hot(slot)[0]
    assert table.record_result(slot, gen, state=state, failures=0, stopped=False, code=200,
                               wall=0.0, rtt_ms=1.0, replied=True)  # fmt: skip


def _key(uri: str) -> str:
    return parse_uri(uri).key


def test_states_and_spellings(glue: Glue) -> None:
    assert ka_add_destination(URI, "o") == 1
    assert "ka_add_destination: added sip:10.0.0.1 owner o" in glue.ksr.texts("info")
    assert ka_is_alive(URI) == 1, "UNKNOWN counts as up"
    set_state(glue, URI, State.DOWN)
    for spelling in (URI, "10.0.0.1", "sip:10.0.0.1:5060", "SIP:10.0.0.1"):
        assert ka_is_alive(spelling) == 2, spelling
    set_state(glue, URI, State.UP)
    assert ka_is_alive(URI) == 1
    assert ka_is_alive("sip:10.0.0.2") == -1
    assert glue.rt.wake_fd >= 0


def test_cache_is_not_stale_after_del(glue: Glue) -> None:
    ka_add_destination(URI, "o")
    set_state(glue, URI, State.DOWN)
    assert ka_is_alive(URI) == 2 and ka_is_alive(URI) == 2  # second answer from the cache
    assert URI in functions._slot_cache
    assert ka_del_destination(URI, "o") == 1
    assert ka_is_alive(URI) == -1


def test_cache_is_not_stale_after_flush(glue: Glue) -> None:
    ka_add_destination(URI, "o")
    set_state(glue, URI, State.UP)
    assert ka_is_alive(URI) == 1 and ka_is_alive(URI) == 1
    glue.rt.commands.call("keepalive.flush", [])
    assert ka_is_alive(URI) == -1


def test_cache_is_not_stale_after_del_and_re_add_with_another_state(glue: Glue) -> None:
    ka_add_destination(URI, "o")
    set_state(glue, URI, State.DOWN)
    assert ka_is_alive(URI) == 2 and ka_is_alive(URI) == 2
    old_slot = glue.rt.table.find(_key(URI))
    ka_del_destination(URI, "o")
    ka_add_destination(URI, "o")
    assert glue.rt.table.find(_key(URI)) == old_slot, "the re-add reuses the cached slot"
    assert ka_is_alive(URI) == 1, "re-added: UNKNOWN again, not the cached DOWN"
    set_state(glue, URI, State.DOWN)
    assert ka_is_alive(URI) == 2


def test_cache_never_answers_for_another_destination_in_the_reused_slot(glue_factory) -> None:  # type: ignore[no-untyped-def]
    glue = glue_factory(KA_MAX_DESTINATIONS="1")
    table = glue.rt.table
    ka_add_destination(URI, "o")
    set_state(glue, URI, State.DOWN)
    assert ka_is_alive(URI) == 2 and ka_is_alive(URI) == 2
    slot = table.find(_key(URI))
    ka_del_destination(URI, "o")
    for i in range(2, 50):  # find another destination that lands in the same slot
        other = f"sip:10.0.0.{i}"
        ka_add_destination(other, "o")
        if table.find(_key(other)) == slot:
            break
        ka_del_destination(other, "o")
    else:
        pytest.fail("no URI reused the slot")
    set_state(glue, other, State.DOWN)
    assert ka_is_alive(URI) == -1, "deleted; its old slot now holds another destination"


def test_cache_follows_another_owner_left_on_the_same_uri(glue: Glue) -> None:
    ka_add_destination(URI, "a")
    ka_add_destination(URI, "b")
    set_state(glue, URI, State.DOWN)  # the first owner's record
    assert ka_is_alive(URI) == 2
    ka_del_destination(URI, "a")
    assert ka_is_alive(URI) == 1, "the other owner's record (UNKNOWN) answers now"


def test_cache_is_bounded(glue: Glue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functions, "CACHE_MAX", 3)
    ka_add_destination(URI, "o")
    spellings = [URI, "10.0.0.1", "sip:10.0.0.1:5060", "SIP:10.0.0.1"]
    for i, spelling in enumerate(spellings):
        assert ka_is_alive(spelling) == 1
        assert len(functions._slot_cache) == (i % 3) + 1
    assert list(functions._slot_cache) == ["SIP:10.0.0.1"]


def test_bad_input_is_minus_one_and_logged_never_raised(glue: Glue) -> None:
    ksr = glue.ksr
    assert ka_is_alive(None) == -1
    assert "ka_is_alive: uri must be a string, not NoneType" in ksr.texts("err")[-1]
    assert ka_is_alive(7) == -1
    assert ka_is_alive("sip:bad host!") == -1
    assert ka_is_alive(URI, "extra") == -1
    assert "ka_is_alive: wrong arguments" in ksr.texts("err")[-1]
    assert ka_add_destination("sip:bad host!", "o") == -1
    assert "ka_add_destination:" in ksr.texts("err")[-1]
    assert ka_add_destination(URI, "") == -1
    assert "owner must be a non-empty string" in ksr.texts("err")[-1]
    assert ka_add_destination(URI, "o") == 1
    assert ka_add_destination("10.0.0.1:5060", "o") == -1, "the same destination, spelled otherwise"
    assert ka_del_destination(URI, "nobody") == -1
    assert ka_del_destination(URI) == -1  # type: ignore[call-arg]
    assert "wrong arguments" in ksr.texts("err")[-1]
    assert not any("internal error" in t for t in ksr.texts())


def test_table_full_is_minus_one(glue_factory) -> None:  # type: ignore[no-untyped-def]
    glue = glue_factory(KA_MAX_DESTINATIONS="2")
    assert ka_add_destination("sip:10.0.0.1", "o") == 1
    assert ka_add_destination("sip:10.0.0.2", "o") == 1
    assert ka_add_destination("sip:10.0.0.3", "o") == -1
    assert "max_destinations (2) reached" in glue.ksr.texts("err")[-1]
