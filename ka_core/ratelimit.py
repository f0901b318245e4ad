"""A token bucket that several processes share: the ``keepalive.add`` flood limit.

RPC adds arrive in the pinger (kamcmd) and in any SIP worker (JSON-RPC over HTTP), so the
bucket lives in the shared table's header and is updated under the table's lock.  Time is the
caller's clock in seconds (wall time in RpcCommands, the same in every process); a clock that
steps back refills nothing, one that jumps forward refills at most one second's worth.
"""

from __future__ import annotations

import struct
from contextlib import AbstractContextManager

_BUCKET = struct.Struct("<dd")  # tokens, time of the last refill
SIZE = _BUCKET.size


class SharedBucket:
    """``rate`` tokens per second, at most ``rate`` saved up (a one-second burst)."""

    def __init__(self, buf: memoryview, lock: AbstractContextManager[object]) -> None:
        if len(buf) != SIZE:
            raise ValueError(f"a bucket needs {SIZE} bytes")
        self._buf = buf
        self._lock = lock

    def take(self, now: float, rate: int) -> bool:
        """Spend one token; False when none is left.  ``rate`` 0 means no limit."""
        if rate <= 0:
            return True
        with self._lock:
            tokens, last = _BUCKET.unpack_from(self._buf, 0)
            tokens = min(float(rate), tokens + max(now - last, 0.0) * rate)
            if tokens < 1.0:
                _BUCKET.pack_into(self._buf, 0, tokens, now)
                return False
            _BUCKET.pack_into(self._buf, 0, tokens - 1.0, now)
            return True
