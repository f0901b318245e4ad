"""``Record``: a snapshot of one destination for the callers that act on one (the prober,
the names and cluster machines, ``ka_add_destination``'s answer).  The views (RPC list, get,
info, /metrics, the state file, the cluster dump) build their own shapes from
``SharedTable.rows`` instead."""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.state import State
from ka_core.store.layout import (
    EJECTED_BY_RETRY_AFTER,
    FIELD_NAMES,
    FIXED,
    FLAG_EJECTED,
    FLAG_PAUSED,
    FLAG_STOPPED,
    INLINE_AT,
    SLOT_SIZE,
    STRINGS,
)
from ka_core.store.strings import CHUNK, Pool, spans, total


@dataclass(frozen=True, slots=True)
class Record:
    """One destination as it was when read."""

    slot: int
    gen: int
    uri: str
    key: str
    owner: str
    state: State
    stopped: bool
    paused: bool
    failures: int
    successes: int
    timeouts: int
    interval_ms: int
    pings: int
    replies: int
    last_code: int
    last_checked: float
    last_up: float
    last_down: float
    rtt_ms: float
    rtt_avg_ms: float
    rtt_ewma_ms: float
    rtt_max_ms: float
    next_ping: float
    added: float
    state_cb: str
    response_cb: str
    settings: str
    user: str
    ejected: bool = False
    """Held out by real traffic (passive health): the state shown is DOWN."""
    ejections: int = 0
    by_retry_after: bool = False
    """The hold in force came from a Retry-After header."""
    out_until: float = 0.0
    """Wall time the ejection ends; 0 when not ejected."""


_COPIED = tuple(
    (name, FIELD_NAMES.index(name))
    for name in ("gen", "failures", "successes", "timeouts", "interval_ms", "pings",
                 "replies", "last_code", "last_checked", "last_up", "last_down", "rtt_ms",
                 "next_ping", "added")
)  # fmt: skip
_STATE, _FLAGS, _REPLIES, _RTT_SUM, _EWMA, _RTT_MAX, _EJECTIONS, _OUT_UNTIL = (
    FIELD_NAMES.index(n)
    for n in (
        "state", "flags", "replies", "rtt_sum", "rtt_ewma", "rtt_max", "ejections", "out_until"
    )
)  # fmt: skip


def decode(buf: memoryview, off: int, slot: int, pool: Pool) -> Record:
    """The ``Record`` of the slot at byte ``off`` (its long strings in ``pool``)."""
    f = FIXED.unpack_from(buf, off)
    fields: dict[str, object] = {name: f[i] for name, i in _COPIED}
    run = pool.run(buf[off + INLINE_AT : off + SLOT_SIZE], f[CHUNK], total(f))
    for name, (start, length) in zip(STRINGS, spans(f), strict=True):
        fields[name] = run[start : start + length].decode("utf-8", "replace")
    replies = f[_REPLIES]
    return Record(
        slot=slot,
        state=State(f[_STATE]),
        stopped=bool(f[_FLAGS] & FLAG_STOPPED),
        paused=bool(f[_FLAGS] & FLAG_PAUSED),
        rtt_avg_ms=f[_RTT_SUM] / replies if replies else 0.0,
        rtt_ewma_ms=f[_EWMA],
        rtt_max_ms=f[_RTT_MAX],
        ejected=bool(f[_FLAGS] & FLAG_EJECTED),
        ejections=f[_EJECTIONS] & ~EJECTED_BY_RETRY_AFTER,
        by_retry_after=bool(f[_EJECTIONS] & EJECTED_BY_RETRY_AFTER),
        out_until=float(f[_OUT_UNTIL]),
        **fields,  # type: ignore[arg-type]
    )
