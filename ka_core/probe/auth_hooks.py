"""The prober's answer to a 401/407 challenge (``ka_core.probe.digest``).  Kept apart from
``ka_core.probe.prober`` so each stays small; ``Prober`` inherits these.

How a challenge travels: the SIP worker that gets a 401/407 reply to a ping sends its
``WWW-Authenticate`` / ``Proxy-Authenticate`` value to the pinger (``kemi.challenges``)
*before* it queues the reply in the ring, so the pinger, which drains the ring first and
the challenges then, has every challenge before the reply it belongs to
(``take_challenge``).  When that reply is applied, a destination with credentials whose
ping was not authenticated yet gets the ping again, under a new sequence number (so a new
Call-ID and branch) with the ``Authorization`` header; the original deadline still holds
and the reply to the new ping is judged as usual.  A challenge to an authenticated ping, a
destination without credentials or a challenge ka-kemi cannot answer is judged as the
reply code it came with (a failure, unless ``alive`` says otherwise).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ka_core.probe.digest import CHALLENGE_CODES, authorization, parse_challenge

if TYPE_CHECKING:
    from ka_core.probe.prober import Ping
    from ka_core.probe.wire import Resends
    from ka_core.store.ring import RingEntry
    from ka_core.store.table import SharedTable


@dataclass(slots=True)
class AuthBook:
    challenges: dict[int, str] = field(default_factory=dict)
    """seq -> challenge header value, for pings still pending."""
    authorized: set[int] = field(default_factory=set)
    """Pending pings that carry credentials: never answered twice."""
    retries: list[Ping] = field(default_factory=list)
    """Authenticated pings to send this step."""
    cnonce: Callable[[int], str] = lambda seq: f"{seq:08x}"
    """The client nonce of ping ``seq``; the glue gives a random one (``secrets``)."""


class AuthHooks:
    _auth: AuthBook
    _table: SharedTable
    _pending: dict[int, Any]
    _dests: dict[int, Any]
    _seq: int
    _timeouts: list[tuple[float, int]]
    _resends: Resends
    _grid: float

    if TYPE_CHECKING:

        def _ping_for(self, seq: int, slot: int, gen: int, dest: Any) -> Ping: ...

    def use_cnonce(self, cnonce: Callable[[int], str]) -> None:
        """The client nonce of each authenticated ping (the glue: a random one)."""
        self._auth.cnonce = cnonce

    def take_challenge(self, seq: int, header: str) -> None:
        """A challenge a SIP worker saw for ping ``seq`` (before its reply is applied)."""
        book = self._auth
        book.challenges = {s: h for s, h in book.challenges.items() if s in self._pending}
        if seq in self._pending:
            book.challenges[seq] = header

    def _answer_challenge(self, entry: RingEntry, now: float) -> bool:
        """True when the reply was a challenge answered with a new, authenticated ping."""
        book = self._auth
        header = book.challenges.pop(entry.seq, None)
        pending = self._pending.get(entry.seq)
        if header is None or pending is None or entry.code not in CHALLENGE_CODES:
            return False
        dest = self._dests.get(pending.slot)
        if dest is None or not self._table.is_used(pending.slot, pending.gen):
            return False  # deleted meanwhile: judged (and dropped) as usual
        challenge = parse_challenge(header)
        if dest.auth is None or entry.seq in book.authorized or not challenge:
            return False
        del self._pending[entry.seq]
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        header_line = authorization(
            entry.code, challenge, dest.auth, dest.method, dest.uri, book.cnonce(self._seq)
        )
        ping = replace(self._ping_for(self._seq, pending.slot, pending.gen, dest), auth=header_line)
        udp = pending.ping is not None  # a UDP ping retransmitted until answered: this too
        self._pending[self._seq] = replace(pending, sent=now, ping=ping if udp else None)
        heapq.heappush(self._timeouts, (pending.deadline, self._seq))
        if udp:
            self._resends.plan(self._seq, 0, now, pending.deadline, self._grid)
        book.authorized = {s for s in book.authorized if s in self._pending} | {self._seq}
        book.retries.append(ping)
        return True

    def _take_retries(self) -> list[Ping]:
        retries, self._auth.retries = self._auth.retries, []
        return retries
