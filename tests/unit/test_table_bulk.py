"""``SharedTable.insert_many`` (the start-up list) against one ``insert`` per destination:
the same slots, bytes, count and ring entries, and the same error at the same item."""

from __future__ import annotations

import threading

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import DuplicateDestination, InvalidArgument, TableFull
from ka_core.settings import parse_settings
from ka_core.store import registry
from ka_core.store.layout import FLAG_NAME, FLAG_OWN_INTERVAL
from ka_core.store.table import Seed, SharedTable, buffer_size
from ka_core.uri import parse_uri


def make_table(max_destinations: int = 64, ring: int = 256) -> tuple[SharedTable, bytearray]:
    buf = bytearray(buffer_size(max_destinations, ring))
    SharedTable.format_buffer(buf, max_destinations, ring)
    return SharedTable(buf, threading.Lock()), buf


def seeds(n: int) -> list[Seed]:
    out: list[Seed] = []
    for i in range(n):
        settings = "interval=7" if i % 3 == 0 else ""
        flags = FLAG_OWN_INTERVAL if settings else 0
        out.append((parse_uri(f"sip:10.1.{i // 200}.{i % 200 + 1}:5060"), settings, flags, 7000))
    return out


def one_by_one(table: SharedTable, items: list[Seed], owner: str, wall: float) -> None:
    for uri, settings, flags, interval_ms in items:
        table.insert(uri, owner, interval_ms=interval_ms, wall=wall, settings=settings, flags=flags)


def test_bulk_insert_equals_single_inserts_byte_for_byte() -> None:
    bulk, bulk_buf = make_table()
    single, single_buf = make_table()
    single.insert(parse_uri("sip:10.9.9.9"), "rpc", interval_ms=1000, wall=1.0)  # not empty
    bulk.insert(parse_uri("sip:10.9.9.9"), "rpc", interval_ms=1000, wall=1.0)
    items = seeds(50)
    one_by_one(single, items, "_params", 2.0)
    added = bulk.insert_many(items, "_params", wall=2.0)
    assert bulk_buf == single_buf  # slots, records, chains, count, ring entries and head
    assert added == [(single.find(u.key, "_params"), 1) for u, *_ in items]
    assert bulk.drain() == single.drain()
    assert bulk.count == 51


def test_bulk_insert_fails_at_the_same_item_as_single_inserts() -> None:
    items = seeds(5)
    items.insert(3, items[1])  # a duplicate at index 3
    bulk, bulk_buf = make_table()
    single, single_buf = make_table()
    with pytest.raises(DuplicateDestination) as single_error:
        one_by_one(single, items, "o", 3.0)
    with pytest.raises(DuplicateDestination) as bulk_error:
        bulk.insert_many(items, "o", wall=3.0)
    assert str(bulk_error.value) == str(single_error.value)
    assert bulk_buf == single_buf  # the three before it are added and queued, no more
    assert bulk.count == 3
    assert len(bulk.drain()) == 3


@pytest.mark.parametrize(
    ("max_destinations", "ring", "text"),
    [(4, 256, "max_destinations"), (64, 4, "pinger queue full")],
)
def test_bulk_insert_stops_cleanly_when_the_table_or_ring_is_full(
    max_destinations: int, ring: int, text: str
) -> None:
    bulk, bulk_buf = make_table(max_destinations, ring)
    single, single_buf = make_table(max_destinations, ring)
    with pytest.raises(TableFull, match=text):
        one_by_one(single, seeds(10), "o", 0.0)
    with pytest.raises(TableFull, match=text):
        bulk.insert_many(seeds(10), "o", wall=0.0)
    assert bulk_buf == single_buf
    assert bulk.count == 4


def test_bulk_insert_refuses_a_too_long_settings_text() -> None:
    bulk, _ = make_table()
    items = [*seeds(2), (parse_uri("sip:10.2.0.1"), "x" * 300, 0, 1000)]
    with pytest.raises(InvalidArgument, match="settings longer than 256 bytes"):
        bulk.insert_many(items, "o", wall=0.0)
    assert bulk.count == 2
    with pytest.raises(InvalidArgument, match="owner longer"):
        bulk.insert_many(seeds(1), "o" * 70, wall=0.0)


def test_add_static_gives_the_records_of_one_add_each() -> None:
    config = load_config(
        {"DESTINATION": '"sip:10.0.0.1:5060 sip:10.0.0.2|interval=9 sip:h.example|interval=9"'}
    )
    bulk, _ = make_table()
    registry.add_static(bulk, config.destinations, "_params", interval_s=30, wall=4.0,
                        resolve_names=True)  # fmt: skip
    single, _ = make_table()
    for uri, settings in config.destinations:
        registry.add(single, uri.display, "_params", interval_s=None, wall=4.0,
                     settings=settings.text, resolve_names=True)  # fmt: skip
    fields = ("uri", "key", "owner", "settings", "interval_ms", "flags", "added", "slot")
    assert bulk.rows(fields) == single.rows(fields)
    flags = {r[0]: r[5] for r in bulk.rows(fields)}
    assert flags["sip:h.example"] & FLAG_NAME and flags["sip:10.0.0.2"] & FLAG_OWN_INTERVAL
    # the two identical settings texts share one parsed object
    assert config.destinations[1][1] is config.destinations[2][1]
    assert config.destinations[1][1] == parse_settings("interval=9")
