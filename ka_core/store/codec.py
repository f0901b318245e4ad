"""The slot codec: accessors for every named slot field, generated once from the layout.

``FIELDS`` maps each fixed field to its struct and byte offset (``layout.SLOT_FIELDS``), so a
single field is read, written or counted by its name, never by a
hand-written offset.  ``read_rows`` decodes the fields a view asks for (fixed ones, strings,
``slot`` and ``metrics``) from every used slot: each view (RPC list, /metrics, the state file,
the cluster dump) builds its own shape from those rows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ka_core.store.layout import (
    FIXED,
    INLINE_AT,
    METRICS,
    METRICS_AT,
    SLOT_FIELDS,
    SLOT_SIZE,
    STRINGS,
    USED,
    index,
    offset,
)
from ka_core.store.strings import CHUNK, ORDER, Pool, spans, total

FIELDS: dict[str, tuple[struct.Struct, int]] = {
    name: (struct.Struct("<" + code), offset(name)) for name, code in SLOT_FIELDS if name
}
"""Fixed field name -> (its struct, its byte offset in a slot)."""
USED_AT = FIELDS["used"][1]
"""Offset of the one-byte ``used`` mark, which every scan of the slots tests first."""


def get(buf: memoryview, off: int, name: str) -> Any:
    """Field ``name`` of the slot at byte ``off``."""
    codec, at = FIELDS[name]
    return codec.unpack_from(buf, off + at)[0]


def put(buf: memoryview, off: int, name: str, value: object) -> None:
    codec, at = FIELDS[name]
    codec.pack_into(buf, off + at, value)


def bump(buf: memoryview, off: int, name: str) -> int:
    """Count one in unsigned counter ``name`` (wrapping); returns the new value."""
    codec, at = FIELDS[name]
    value = (codec.unpack_from(buf, off + at)[0] + 1) & ((1 << (8 * codec.size)) - 1)
    codec.pack_into(buf, off + at, value)
    return int(value)


def column(buf: memoryview, slots_at: int, capacity: int, name: str) -> list[Any]:
    """Fixed field ``name`` of every slot, used or not, in slot order: each of its bytes is
    gathered for all slots by one strided copy (C speed; a row per slot costs ~5x more at
    100,000).  Read without the lock: a slot written meanwhile may come back torn, so a
    caller keeps what it builds only while the membership counter it read first holds."""
    codec, at = FIELDS[name]
    size, start = codec.size, slots_at + at
    end = slots_at + capacity * SLOT_SIZE
    out = bytearray(capacity * size)
    for k in range(size):
        out[k::size] = buf[start + k : end : SLOT_SIZE]
    return list(struct.unpack(f"<{capacity}{codec.format[-1]}", out))


def read_rows(
    buf: memoryview,
    slots_at: int,
    slots: Iterable[int],
    lock: AbstractContextManager[object],
    fields: Sequence[str],
    pool: Pool,
) -> list[tuple[Any, ...]]:
    """One tuple per used slot of ``slots``, holding ``fields`` in that order: fixed fields,
    strings (decoded), ``slot`` and ``metrics`` (the 16 counters).  Each slot's bytes (and its
    strings' chunks, when a string is asked for) are copied under the lock (consistent; held
    for one slot, never for the whole table) and decoded after it."""
    plan = [_reader(name) for name in fields]
    wants_text = any(name in STRINGS for name in fields)
    span = SLOT_SIZE if wants_text else max([FIXED.size] + [_end(name) for name in fields])
    unpack, i_used = FIXED.unpack_from, index("used")
    out = []
    texts: tuple[bytes, list[tuple[int, int]]] = (b"", [])
    for slot in slots:
        off = slots_at + slot * SLOT_SIZE
        if buf[off + USED_AT] != USED:
            continue
        with lock:
            raw = bytes(buf[off : off + span])
            f = unpack(raw)
            if wants_text:
                run = pool.run(memoryview(raw)[INLINE_AT:], f[CHUNK], total(f))
        if f[i_used] == USED:  # not deleted meanwhile
            if wants_text:
                texts = (run, spans(f))
            out.append(tuple([read(raw, slot, f, texts) for read in plan]))
    return out


def _end(name: str) -> int:
    """Where the bytes ``name`` is read from end in the slot."""
    return METRICS_AT + METRICS.size if name == "metrics" else 0


def _reader(name: str) -> Any:
    if name == "slot":
        return lambda raw, slot, f, run: slot
    if name == "metrics":
        return lambda raw, slot, f, run: METRICS.unpack_from(raw, METRICS_AT)
    if name in STRINGS:
        at = ORDER.index(name)

        def string(
            raw: bytes, slot: int, f: tuple[Any, ...], texts: tuple[bytes, list[tuple[int, int]]]
        ) -> str:
            run, where = texts
            start, length = where[at]
            return run[start : start + length].decode("utf-8", "replace")

        return string
    if name not in FIELDS:
        raise KeyError(f"no slot field {name!r}")
    position = index(name)
    return lambda raw, slot, f, run: f[position]
