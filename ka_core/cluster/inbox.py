"""A shared byte queue from the SIP workers to the pinger: cluster messages received.

KDMQ requests of the keepalive channel arrive in whichever SIP worker read them; that worker
validates the body (``ka_core.cluster.codec``), appends it here and wakes the pinger, which
drains and applies it in its core thread (one writer of cluster state, so no merge races).

Layout, in a buffer ``kemi.runtime`` maps before fork (tests use a ``bytearray``): a header
(head and tail byte counters, then the length of the status text), the status text the pinger
publishes for ``keepalive.cluster`` (any process serves RPC), then the message ring.  Each
message is a 4-byte length and its bytes; a message may wrap around the ring's end.  Every
call holds the caller's lock.  A full ring refuses the message (the sender gets a 503, and
the periodic digests repair what was lost).
"""

from __future__ import annotations

import struct
from contextlib import AbstractContextManager

_HEAD = struct.Struct("<QQI")  # head, tail (byte counters), status length
_LEN = struct.Struct("<I")
HEADER_BYTES = 32
STATUS_BYTES = 64 * 1024


def inbox_size(ring_bytes: int) -> int:
    return HEADER_BYTES + STATUS_BYTES + ring_bytes


class Inbox:
    def __init__(self, buf: bytearray | memoryview, lock: AbstractContextManager[object]) -> None:
        self._buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self._lock = lock
        self._ring_at = HEADER_BYTES + STATUS_BYTES
        self.capacity = len(self._buf) - self._ring_at
        if self.capacity < 1024:
            raise ValueError("inbox buffer too small")

    def push(self, message: bytes) -> bool:
        """Queue one message; False when it does not fit."""
        need = _LEN.size + len(message)
        with self._lock:
            head, tail, status = _HEAD.unpack_from(self._buf, 0)
            if self.capacity - (head - tail) < need:
                return False
            self._write(head, _LEN.pack(len(message)) + message)
            _HEAD.pack_into(self._buf, 0, head + need, tail, status)
            return True

    def drain(self) -> list[bytes]:
        """Every queued message, oldest first (the pinger only)."""
        out = []
        with self._lock:
            head, tail, status = _HEAD.unpack_from(self._buf, 0)
            while tail < head:
                (length,) = _LEN.unpack(self._read(tail, _LEN.size))
                out.append(self._read(tail + _LEN.size, length))
                tail += _LEN.size + length
            _HEAD.pack_into(self._buf, 0, head, tail, status)
        return out

    def publish(self, status: bytes) -> None:
        """Replace the status text (cut to ``STATUS_BYTES``)."""
        status = status[:STATUS_BYTES]
        with self._lock:
            head, tail, _ = _HEAD.unpack_from(self._buf, 0)
            self._buf[HEADER_BYTES : HEADER_BYTES + len(status)] = status
            _HEAD.pack_into(self._buf, 0, head, tail, len(status))

    def status(self) -> bytes:
        with self._lock:
            length = _HEAD.unpack_from(self._buf, 0)[2]
            return bytes(self._buf[HEADER_BYTES : HEADER_BYTES + length])

    def _write(self, pos: int, data: bytes) -> None:
        at = pos % self.capacity
        first = min(len(data), self.capacity - at)
        start = self._ring_at + at
        self._buf[start : start + first] = data[:first]
        rest = len(data) - first
        if rest:
            self._buf[self._ring_at : self._ring_at + rest] = data[first:]

    def _read(self, pos: int, length: int) -> bytes:
        at = pos % self.capacity
        first = min(length, self.capacity - at)
        start = self._ring_at + at
        data = bytes(self._buf[start : start + first])
        if length > first:
            data += bytes(self._buf[self._ring_at : self._ring_at + length - first])
        return data
