"""The compact table (issue 31 item 4): dense slots reused after a delete, the hash index's
collisions and tombstones, the key kept once when it is the URI, long strings in the pool,
a full pool refused with one named error, and a table at full capacity."""

from __future__ import annotations

import threading
import zlib

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument, RpcFault, StringPoolFull, TableFull
from ka_core.ops.commands import RpcCommands
from ka_core.store import codec
from ka_core.store.layout import BUCKETS_PER_SLOT, INLINE_SIZE, SLOT_SIZE, STRINGS
from ka_core.store.strings import WORST_CHUNKS, chunks_for, default_chunks
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri

LONG_HOST = ".".join(["a" * 60] * 4)  # a 243-byte host: URI and key both near their limits
LONG = {
    "owner": "o" * (STRINGS["owner"] - 1),
    "state_cb": "m:" + "s" * (STRINGS["state_cb"] - 2),
    "response_cb": "m:" + "r" * (STRINGS["response_cb"] - 2),
    "settings": "x" * STRINGS["settings"],
    "user": "é" * (STRINGS["user"] // 2),
}


def make_table(max_destinations: int = 16, ring: int = 256, chunks: int = 0) -> SharedTable:
    buf = bytearray(buffer_size(max_destinations, ring, chunks))
    SharedTable.format_buffer(buf, max_destinations, ring, 30, chunks)
    return SharedTable(buf, threading.Lock())


def add_long(table: SharedTable, i: int) -> tuple[int, int]:
    uri = parse_uri(f"sip:{i}{LONG_HOST[len(str(i)) :]}")
    return table.insert(uri, interval_ms=1000, wall=1.0, **LONG)  # type: ignore[arg-type]


def test_a_slot_is_about_a_quarter_of_the_old_one() -> None:
    assert SLOT_SIZE == 384
    per_destination = buffer_size(100_000, 1, 0) / 100_000
    assert per_destination < 1024 - 128, per_destination  # the ring's 128 B come on top


def test_a_deleted_slot_is_reused_with_a_new_generation() -> None:
    t = make_table()
    first = parse_uri("10.0.0.1")
    slot, gen = t.insert(first, "o", interval_ms=1000, wall=0)
    t.insert(parse_uri("10.0.0.2"), "o", interval_ms=1000, wall=0)
    t.remove(first.key, "o")
    assert not t.is_used(slot, gen)
    again, new_gen = t.insert(parse_uri("10.0.0.3"), "o", interval_ms=1000, wall=0)
    assert again == slot and new_gen == gen + 2  # bumped when freed and when taken
    assert not t.is_used(slot, gen) and t.is_used(again, new_gen)
    assert t.find(first.key) == -1 and t.read(again).uri == "sip:10.0.0.3"


def test_the_key_is_stored_only_when_it_differs_from_the_uri() -> None:
    t = make_table()
    same, _ = t.insert(parse_uri("sip:10.0.0.1:5060;transport=udp"), "o", interval_ms=1, wall=0)
    other, _ = t.insert(parse_uri("sip:Example.com"), "o", interval_ms=1, wall=0)
    off = t.chains.off
    assert codec.get(t._buf, off(same), "key_len") == 0
    assert t.read(same).key == t.read(same).uri == "sip:10.0.0.1:5060;transport=udp"
    assert (t.read(other).uri, t.read(other).key) == ("sip:Example.com", "sip:example.com:5060")
    assert t.find("sip:10.0.0.1:5060;transport=udp", "o") == same
    assert t.find("sip:example.com:5060", "o") == other
    assert t.rows(("uri", "key", "owner")) == [
        ("sip:10.0.0.1:5060;transport=udp", "sip:10.0.0.1:5060;transport=udp", "o"),
        ("sip:Example.com", "sip:example.com:5060", "o"),
    ]


def test_long_strings_round_trip_through_the_pool_and_go_back_to_it() -> None:
    t = make_table()
    slot, gen = add_long(t, 7)
    record = t.read(slot)
    stored = (record.uri, record.key, *LONG.values())
    assert t.pool.used == chunks_for(sum(len(text.encode()) for text in stored)) > 0
    assert (record.owner, record.state_cb, record.response_cb, record.settings, record.user) == (
        LONG["owner"], LONG["state_cb"], LONG["response_cb"], LONG["settings"], LONG["user"],
    )  # fmt: skip
    assert record.uri.startswith("sip:7aaa") and record.key == record.uri.lower() + ":5060"
    assert t.find(record.key, LONG["owner"]) == slot  # key and owner read through the pool
    assert t.find(record.key, "other") == -1
    fields = ("uri", "key", "owner", "state_cb", "response_cb", "settings", "user")
    assert t.rows(fields) == [tuple(getattr(record, name) for name in fields)]
    assert t.pool.text(t.chains.off(slot), "user") == LONG["user"].encode()
    t.remove(record.key, LONG["owner"])
    assert t.pool.used == 0 and not t.is_used(slot, gen)


def test_a_full_pool_refuses_with_one_named_error_and_changes_nothing() -> None:
    t = make_table(chunks=4)
    short, _ = t.insert(parse_uri("10.0.0.1"), "o", interval_ms=1, wall=0)
    before = bytes(t._buf)
    with pytest.raises(StringPoolFull) as err:
        add_long(t, 1)
    assert str(err.value) == "TableFull: string pool full (KA_STRING_CHUNKS=4)"
    assert isinstance(err.value, TableFull)
    assert bytes(t._buf) == before and t.count == 1 and t.read(short).uri == "sip:10.0.0.1"
    commands = RpcCommands(make_table(chunks=2), lambda: 1.0)
    with pytest.raises(RpcFault) as fault:
        commands.call("keepalive.add", [f"sip:{LONG_HOST}", "o"])  # 500 bytes: 3 chunks
    assert fault.value.text == (
        "couldn't add data to list: TableFull: string pool full (KA_STRING_CHUNKS=2)"
    )


def test_the_default_pool_holds_the_worst_case_up_to_1024_destinations() -> None:
    assert WORST_CHUNKS == chunks_for(sum(STRINGS.values())) > 0
    assert [default_chunks(n) for n in (1, 1024)] == [WORST_CHUNKS, 1024 * WORST_CHUNKS]
    assert default_chunks(2000) == 1024 * WORST_CHUNKS  # never fewer than at 1,024
    assert default_chunks(100_000) == 200_000
    assert chunks_for(INLINE_SIZE) == 0 and chunks_for(INLINE_SIZE + 1) == 1


def test_a_table_at_full_capacity_with_every_string_at_its_limit() -> None:
    t = make_table(max_destinations=8)
    added = [add_long(t, i) for i in range(8)]
    assert t.count == 8
    with pytest.raises(TableFull, match=r"max_destinations \(8\) reached"):
        add_long(t, 9)
    t.remove(t.read(added[3][0]).key, LONG["owner"])
    assert add_long(t, 9)[0] == added[3][0]
    assert t.flush() == 8 and t.pool.used == 0 and t.count == 0
    again = [add_long(t, i) for i in range(8)]
    assert [slot for slot, _ in again] == list(range(8))
    assert all(gen == added[slot][1] + 2 for slot, gen in again if slot != 3)


def test_index_collisions_and_tombstones() -> None:
    """Keys whose buckets collide chain past each other; a delete leaves a tombstone that
    keeps the later ones reachable and is taken by the next add on that chain."""
    t = make_table(max_destinations=4)
    buckets = BUCKETS_PER_SLOT * 4
    home: dict[int, list[str]] = {}
    i = 0
    while not any(len(keys) >= 3 for keys in home.values()):
        key = parse_uri(f"10.0.1.{i}").key
        home.setdefault(zlib.crc32(key.encode()) % buckets, []).append(key)
        i += 1
    a, b, c = next(keys for keys in home.values() if len(keys) >= 3)[:3]
    slots = {k: t.insert(parse_uri(k), "o", interval_ms=1, wall=0)[0] for k in (a, b, c)}
    assert {k: t.find(k) for k in (a, b, c)} == slots
    t.remove(b, "o")
    assert t.find(b) == -1 and t.find(c) == slots[c] and t.find(a) == slots[a]
    assert t.chains.slot_usage()[1] == 1  # b's bucket is a tombstone: c is after it
    assert t.chains.probe_length(c) == 3
    t.insert(parse_uri(b), "p", interval_ms=1, wall=0)
    assert t.chains.slot_usage()[:2] == (3, 0) and t.find(b, "p") >= 0
    t.remove(c, "o")
    t.remove(b, "p")
    assert t.chains.slot_usage() == (1, 0, buckets - 1)  # the run's tombstones emptied


def test_ka_string_chunks_is_a_define_like_ka_max_destinations() -> None:
    assert load_config({}).string_chunks == 0
    assert load_config({"STRING_CHUNKS": "5000"}).string_chunks == 5000
    with pytest.raises(InvalidArgument, match="string_chunks: 0 out of range"):
        load_config({"STRING_CHUNKS": "0"})
    t = make_table(chunks=5000)
    assert t.pool.chunks == 5000


def test_newest_slots_is_the_full_lists_order_with_ties_deletes_and_reuse() -> None:
    from ka_core.ops.commands import newest_first

    t = make_table(64)
    for i in range(40):
        t.insert(parse_uri(f"10.0.3.{i}"), "o", interval_ms=1000, wall=float(i // 4))  # ties
    for i in (3, 17, 30):
        t.remove(parse_uri(f"10.0.3.{i}").key, "o")
    t.insert(parse_uri("10.0.4.1"), "o", interval_ms=1000, wall=2.0)  # reuses a freed slot
    expected = [r[0] for r in newest_first(t.rows(("slot", "added")))]
    assert t.newest_slots() == expected and len(expected) == 38
    assert codec.column(t._buf, t._slots_at, t.capacity, "added")[expected[0]] == 9.0
