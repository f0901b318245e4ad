"""Digest challenges from the SIP workers to the pinger (``ka_core.probe.auth_hooks``).

A challenge is a header value of up to 2 KB, too big for the reply ring's 32-byte entries,
so it travels as one datagram on a Unix socket pair made before fork: any worker can send
(non-blocking: with the pinger's buffer full the challenge is dropped and the 401/407 is
judged as it is), and the pinger's ``select`` wakes on the other end.  A worker sends the
challenge *before* it queues the reply in the ring, and the pinger drains the ring before
the challenges, so a reply never arrives without its challenge.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from ka_core.probe.digest import MAX_CHALLENGE_BYTES

_SEQ = struct.Struct("<I")
MAX_DATAGRAM = _SEQ.size + MAX_CHALLENGE_BYTES


class ChallengeChannel:
    def __init__(self) -> None:
        self._pinger, self._workers = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end in (self._pinger, self._workers):
            end.setblocking(False)

    def fileno(self) -> int:
        """The pinger's end, for its ``select``."""
        return self._pinger.fileno()

    def send(self, seq: int, header: str) -> bool:
        """A SIP worker: the challenge of ping ``seq``; False when dropped."""
        data = header.encode("utf-8", "replace")
        if len(data) > MAX_CHALLENGE_BYTES:
            return False
        try:
            self._workers.send(_SEQ.pack(seq & 0xFFFFFFFF) + data)
        except OSError:  # buffer full
            return False
        return True

    def drain(self) -> list[tuple[int, str]]:
        """The pinger: every challenge queued, oldest first."""
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                data = self._pinger.recv(MAX_DATAGRAM)
                if len(data) >= _SEQ.size:
                    out.append(
                        (_SEQ.unpack_from(data)[0], data[_SEQ.size :].decode("utf-8", "replace"))
                    )
        return out

    def close(self) -> None:
        self._pinger.close()
        self._workers.close()
