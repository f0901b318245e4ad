"""A slot's strings and the pool their overflow lives in.

A destination's strings (``layout.STRINGS``, in that order) are stored as one run of bytes:
its first ``INLINE_SIZE`` bytes in the slot, the rest in a chain of ``CHUNK_SIZE`` chunks of
the pool at the end of the buffer.  The key is left out when it is the URI (``key_len`` 0).
Each string is found from the length fields before it, so a typical destination (URI, key,
owner) is read from the slot alone.  A full pool refuses the add with ``StringPoolFull``
before anything is written; chunks go back to a free list when the slot is freed.  Changes
are made with the table's lock held; readers without it get bounded, possibly torn, bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ka_core.errors import StringPoolFull
from ka_core.store.layout import (
    CHUNK_DATA,
    CHUNK_SIZE,
    FIXED,
    INLINE_AT,
    INLINE_SIZE,
    POOL,
    POOL_AT,
    SLOT_SIZE,
    STRINGS,
    index,
)

ORDER = tuple(STRINGS)
_LEN = tuple(index(f"{name}_len") for name in ORDER)
_BEFORE = {name: _LEN[: ORDER.index(name)] for name in ORDER}
_AT = {name: i for i, name in enumerate(ORDER)}
_URI_LEN, _KEY_LEN, CHUNK = index("uri_len"), index("key_len"), index("chunk")
_NEXT = struct.Struct("<I")


def chunks_for(total: int) -> int:
    """Pool chunks that ``total`` bytes of strings need beyond the slot's own."""
    return max(0, -(-(total - INLINE_SIZE) // CHUNK_DATA))


WORST_CHUNKS = chunks_for(sum(STRINGS.values()))
"""Chunks of a destination with every string at its limit."""
WORST_CASE_UP_TO = 1024


def default_chunks(max_destinations: int) -> int:
    """The pool when ``KA_STRING_CHUNKS`` is not set: the worst case of every destination up
    to ``WORST_CASE_UP_TO`` (such a table refuses nothing one 1,552-byte slot each took),
    2 chunks per destination above it."""
    return max(2 * max_destinations, WORST_CHUNKS * min(max_destinations, WORST_CASE_UP_TO))


def pack(encoded: dict[str, bytes]) -> tuple[bytes, list[int]]:
    """The strings (``ORDER``; missing ones empty) as one run, and their lengths in order."""
    get = encoded.get
    parts = [get(name, b"") for name in ORDER]
    if parts[1] == parts[0]:
        parts[1] = b""
    return b"".join(parts), list(map(len, parts))


def total(f: Sequence[int]) -> int:
    """Bytes of strings of the slot whose fixed fields are ``f``."""
    return sum(f[at] for at in _LEN)


def spans(f: Sequence[int]) -> list[tuple[int, int]]:
    """(start, length) of every string (``ORDER``) in the run: one pass, for readers of
    them all (a snapshot, a record)."""
    out, at = [], 0
    for i in _LEN:
        length = f[i]
        out.append((at, length))
        at += length
    if not f[_KEY_LEN]:
        out[1] = (0, f[_URI_LEN])
    return out


def span(f: Sequence[int], name: str) -> tuple[int, int]:
    """(start, length) of string ``name`` in the run of the slot whose fixed fields are ``f``."""
    return spans(f)[_AT[name]]


class Pool:
    """The chunks (``chunks`` of them from byte ``pool_at``) and the strings of slots."""

    def __init__(self, buf: memoryview, pool_at: int, chunks: int) -> None:
        self._buf = buf
        self._at = pool_at
        self.chunks = chunks

    def _chunk(self, ref: int) -> int:
        return self._at + (ref - 1) * CHUNK_SIZE

    def store(self, rest: bytes) -> int:
        """Put the bytes that did not fit inline in new chunks; the first one (0: none needed).
        Raises ``StringPoolFull`` and changes nothing when the pool has too few."""
        if not rest:
            return 0
        buf, need = self._buf, -(-len(rest) // CHUNK_DATA)
        taken, free, used = POOL.unpack_from(buf, POOL_AT)
        if self.chunks - used < need:
            raise StringPoolFull(f"TableFull: string pool full (KA_STRING_CHUNKS={self.chunks})")
        refs = []
        for _ in range(need):
            if free:
                refs.append(free)
                free = _NEXT.unpack_from(buf, self._chunk(free))[0]
            else:
                taken += 1
                refs.append(taken)
        for i, ref in enumerate(refs):
            at = self._chunk(ref)
            piece = rest[i * CHUNK_DATA : (i + 1) * CHUNK_DATA]
            _NEXT.pack_into(buf, at, refs[i + 1] if i + 1 < need else 0)
            buf[at + 4 : at + 4 + len(piece)] = piece
        POOL.pack_into(buf, POOL_AT, taken, free, used + need)
        return int(refs[0])

    def release(self, first: int) -> None:
        """Give the chain starting at ``first`` back to the free list (0: nothing)."""
        if not first:
            return
        buf, count, ref = self._buf, 1, first
        while nxt := _NEXT.unpack_from(buf, self._chunk(ref))[0]:
            count, ref = count + 1, nxt
        taken, free, used = POOL.unpack_from(buf, POOL_AT)
        _NEXT.pack_into(buf, self._chunk(ref), free)
        POOL.pack_into(buf, POOL_AT, taken, first, used - count)

    def reset(self) -> None:
        """Every chunk free (a flush)."""
        POOL.pack_into(self._buf, POOL_AT, 0, 0, 0)

    @property
    def used(self) -> int:
        return int(POOL.unpack_from(self._buf, POOL_AT)[2])

    def run(self, inline: bytes | memoryview, first: int, upto: int) -> bytes:
        """The first ``upto`` bytes of a slot's strings: ``inline``, its inline area (a copy or
        the buffer), then the chain from ``first``, followed at most ``chunks`` times."""
        if upto <= INLINE_SIZE:
            return bytes(inline[:upto])
        parts, left, ref, buf = [bytes(inline[:INLINE_SIZE])], upto - INLINE_SIZE, first, self._buf
        for _ in range(self.chunks):
            if not 0 < ref <= self.chunks or left <= 0:
                break
            at = self._chunk(ref)
            parts.append(bytes(buf[at + 4 : at + 4 + min(left, CHUNK_DATA)]))
            left -= CHUNK_DATA
            ref = _NEXT.unpack_from(buf, at)[0]
        return b"".join(parts)

    def text(self, off: int, name: str) -> bytes:
        """String ``name`` of the slot at byte ``off``."""
        f = FIXED.unpack_from(self._buf, off)
        start, length = span(f, name)
        inline = self._buf[off + INLINE_AT : off + SLOT_SIZE]
        return self.run(inline, f[CHUNK], start + length)[start:]
