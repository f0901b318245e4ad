from __future__ import annotations

import struct
import threading

import pytest

from ka_core.errors import DuplicateDestination, InvalidArgument, TableFull, UnknownDestination
from ka_core.state import State
from ka_core.store.ring import KIND_ADDED, KIND_REPLY
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri


def make_table(max_destinations: int = 16, ring: int = 64) -> SharedTable:
    buf = bytearray(buffer_size(max_destinations, ring))
    SharedTable.format_buffer(buf, max_destinations, ring)
    return SharedTable(buf, threading.Lock())


def test_insert_find_read_remove() -> None:
    t = make_table()
    slot, gen = t.insert(parse_uri("10.0.0.1"), "own", interval_ms=1000, wall=5.0)
    rec = t.read(slot)
    assert (rec.uri, rec.key, rec.owner, rec.state, rec.added) == (
        "sip:10.0.0.1", "sip:10.0.0.1:5060", "own", State.UNKNOWN, 5.0,
    )  # fmt: skip
    assert t.find("sip:10.0.0.1:5060") == slot
    assert t.find("sip:10.0.0.1:5060", "other") == -1
    assert t.count == 1
    t.remove("sip:10.0.0.1:5060", "own")
    assert t.find("sip:10.0.0.1:5060") == -1
    assert t.count == 0
    assert not t.is_used(slot, gen)


def test_same_uri_two_owners_are_two_destinations_but_duplicates_fail() -> None:
    t = make_table()
    t.insert(parse_uri("h"), "a", interval_ms=1, wall=0)
    t.insert(parse_uri("sip:h:5060"), "b", interval_ms=1, wall=0)
    with pytest.raises(DuplicateDestination):
        t.insert(parse_uri("sip:H"), "a", interval_ms=1, wall=0)
    assert t.count == 2


def test_max_destinations_is_enforced_and_nothing_changes() -> None:
    t = make_table(max_destinations=3)
    for i in range(3):
        t.insert(parse_uri(f"10.0.0.{i}"), "o", interval_ms=1, wall=0)
    with pytest.raises(TableFull):
        t.insert(parse_uri("10.0.1.1"), "o", interval_ms=1, wall=0)
    assert t.count == 3 and len(list(t.records())) == 3


def test_slots_are_reused_after_delete_with_a_new_generation() -> None:
    t = make_table(max_destinations=2)
    for _ in range(50):
        slot, gen = t.insert(parse_uri("10.9.9.9"), "o", interval_ms=1, wall=0)
        t.remove("sip:10.9.9.9:5060", "o")
        assert not t.is_used(slot, gen)
    assert t.count == 0


def test_ring_carries_adds_and_replies_and_refuses_when_full() -> None:
    t = make_table(ring=2)
    slot, gen = t.insert(parse_uri("h1"), "o", interval_ms=1, wall=0)
    assert t.push_reply(7, 200, 1.0, 2.0)
    assert not t.push_reply(8, 200, 1.0, 2.0)
    with pytest.raises(TableFull, match="queue"):
        t.insert(parse_uri("h2"), "o", interval_ms=1, wall=0)
    entries = t.drain()
    assert next((e.kind, e.slot, e.gen) for e in entries) == (KIND_ADDED, slot, gen)
    assert (entries[1].kind, entries[1].seq, entries[1].code) == (KIND_REPLY, 7, 200)
    assert t.drain() == []


def test_flush_removes_everything() -> None:
    t = make_table()
    for i in range(5):
        t.insert(parse_uri(f"10.0.0.{i}"), "o", interval_ms=1, wall=0)
    assert t.flush() == 5
    assert t.count == 0 and list(t.records()) == []
    t.insert(parse_uri("10.0.0.1"), "o", interval_ms=1, wall=0)
    assert t.count == 1


def test_record_result_is_ignored_for_a_deleted_slot() -> None:
    t = make_table()
    slot, gen = t.insert(parse_uri("h"), "o", interval_ms=1, wall=0)
    t.remove("sip:h:5060", "o")
    assert not t.record_result(
        slot, gen, state=State.UP, failures=0, stopped=False, code=200, wall=1, rtt_ms=1,
        replied=True,
    )  # fmt: skip


def test_too_long_fields_are_refused() -> None:
    t = make_table()
    with pytest.raises(InvalidArgument):
        t.insert(parse_uri("h"), "o" * 100, interval_ms=1, wall=0)
    with pytest.raises(UnknownDestination):
        t.get("sip:h:5060", "o")


def test_uninitialised_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="format_buffer"):
        SharedTable(bytearray(buffer_size(1, 1)), threading.Lock())


def test_in_place_field_offsets_match_the_record_layout() -> None:
    """record_pings updates two fields in place; their offsets must be the packed ones."""
    from ka_core.store.layout import FIELD_NAMES, FIXED, SLOT_FIELDS, offset

    codes = [code for name, code in SLOT_FIELDS if name]
    values: list[int | float] = [
        float(i) if c == "d" else i % 200 + 1 for i, c in enumerate(codes, start=1)
    ]
    buf = bytearray(FIXED.size)
    FIXED.pack_into(buf, 0, *values)
    for index, (name, code) in enumerate(zip(FIELD_NAMES, codes, strict=True)):
        (value,) = struct.unpack_from("<" + code, buf, offset(name))
        assert value == values[index], name


def test_churn_leaves_probe_chains_as_on_day_one() -> None:
    """Tombstones followed by an empty slot are emptied: after 20,000 add/del cycles of new
    URIs a lookup (hit or miss) visits as few slots as before, and no record moved."""
    table = make_table(max_destinations=64, ring=64)
    keep = [f"10.1.0.{i}" for i in range(1, 33)]
    for uri in keep:
        table.insert(parse_uri(uri), "t", interval_ms=1000, wall=0)
    slots = {uri: table.find(parse_uri(uri).key) for uri in keep}
    table.drain()
    misses = [parse_uri(f"10.9.9.{i}").key for i in range(1, 50)]
    day_one = sum(table.chains.probe_length(k) for k in misses)
    for i in range(20_000):
        uri = parse_uri(f"10.2.{i // 250}.{i % 250 + 1}")
        table.insert(uri, "churn", interval_ms=1000, wall=0)
        table.remove(uri.key, "churn")
        if i % 32 == 0:
            table.drain()
    used, tombs, _empty = table.chains.slot_usage()
    assert used == 32 and tombs <= 8, (used, tombs)
    assert sum(table.chains.probe_length(k) for k in misses) <= day_one * 1.2 + 5
    assert {uri: table.find(parse_uri(uri).key) for uri in keep} == slots
