"""The slot codec (``ka_core.store.codec``): every fixed field by its name, and the rows views
build their shapes from."""

from __future__ import annotations

import pytest

from ka_core.state import State
from ka_core.store import codec
from ka_core.store.layout import FIELD_NAMES, FIXED
from ka_core.uri import parse_uri
from tests.unit.test_table import make_table


def test_every_fixed_field_has_one_accessor_at_its_own_bytes() -> None:
    assert list(codec.FIELDS) == list(FIELD_NAMES)
    buf = memoryview(bytearray(FIXED.size))
    for number, name in enumerate(FIELD_NAMES, 1):
        codec.put(buf, 0, name, number)
    assert FIXED.unpack_from(buf, 0) == tuple(range(1, len(FIELD_NAMES) + 1))


def test_bump_wraps_at_the_fields_width() -> None:
    buf = memoryview(bytearray(FIXED.size))
    codec.put(buf, 0, "pings", 0xFFFFFFFF)
    assert codec.bump(buf, 0, "pings") == 0
    codec.put(buf, 0, "state", 255)
    assert codec.bump(buf, 0, "state") == 0
    assert codec.get(buf, 0, "gen") == 0, "neighbours untouched"


def test_an_unknown_field_name_is_refused() -> None:
    buf = memoryview(bytearray(FIXED.size))
    with pytest.raises(KeyError):
        codec.get(buf, 0, "stat")
    t = make_table()
    t.insert(parse_uri("sip:10.0.0.1"), "gw", interval_ms=1000, wall=1.0)
    with pytest.raises(KeyError):
        t.rows(["uri", "nope"])


def test_rows_hold_the_asked_fields_of_used_slots_only() -> None:
    t = make_table()
    a = t.insert(parse_uri("sip:10.0.0.1"), "gw", interval_ms=1000, wall=1.0, user="ü")
    b = t.insert(parse_uri("sip:10.0.0.2"), "gw", interval_ms=2000, wall=2.0)
    t.set_state(*b, State.DOWN, 3.0)
    t.remove_slot(*a)
    assert t.rows(["slot", "uri", "state", "interval_ms", "user"]) == [
        (b[0], "sip:10.0.0.2", State.DOWN, 2000, "")
    ]
    ((counters,),) = t.rows(["metrics"])
    assert counters[-1] == 1, "the state change counted"
    assert t.rows(["uri"], slots=[a[0]]) == [], "a deleted slot gives no row"
