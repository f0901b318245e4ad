"""Passive health: ejecting a destination on the outcomes of real requests (outlier
detection, after Envoy's ``consecutive_5xx``).

Theory of operation.  A script reports the final code of a request it relayed to a
destination (or 408 for a local timeout) with ``ka_report``; the SIP worker queues it in the
ring and the pinger, the one writer of states, applies it here.  ``after`` reports in a row
whose code is in ``codes`` eject the destination for ``base_s`` x the number of times it has
been ejected, at most ``max_s``.  Any other code resets the count.  At most ``max_percent``
of a group (the destinations of one owner) is ejected at once, but always at least one, as
in Envoy, so a fault that fails every gateway never empties the group.  An ejection ends
when its time is up or at the next alive probe, whichever comes first.

While ejected a destination's state in the table is DOWN (events and ``keepalive.list`` see
a change to DOWN and back) with ``FLAG_EJECTED`` set, so ``ka_is_alive`` answers
``EJECTED_VALUE`` (or 2 with ``as_down``) and RPC and /metrics show the cause.  Everything
here is off (``after`` 0) unless the operator turns it on.

Retry-After: a reply whose code is in ``retry_codes`` (a ping's, or one a script reported)
with a Retry-After header holds the destination out until then, capped by ``retry_max_s``;
only that time ends such a hold (the peer said when to come back), and it does not count
against the group's share.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.policy import MAX_RETRY_AFTER_S, Ejection

EJECTED_VALUE = 4
"""``ka_is_alive`` for an ejected destination (1 UP, 2 DOWN, 3 DEGRADED, -1 unknown)."""


@dataclass(slots=True)
class Outlier:
    """What passive health holds for one destination (pinger memory)."""

    gen: int
    owner: str
    policy: Ejection
    failures: int = 0
    ejections: int = 0
    until: float = 0.0
    """Monotonic time the ejection ends; 0 = in service."""
    hold_until: float = 0.0
    """Monotonic end of a Retry-After's hold: until then no alive probe ends it."""

    @property
    def ejected(self) -> bool:
        return self.until > 0

    @property
    def retry(self) -> bool:
        """The hold in force is a Retry-After's (it ends last)."""
        return 0 < self.until <= self.hold_until


def may_eject(group_size: int, ejected_now: int, max_percent: int) -> bool:
    """One more ejection keeps the group within ``max_percent``, or none is ejected yet."""
    return ejected_now == 0 or (ejected_now + 1) * 100 <= max_percent * group_size


def count(o: Outlier, code: int) -> bool:
    """Count one reported code; True when the destination has now failed ``after`` times
    in a row and is not ejected already (the caller checks the group's share)."""
    if code not in o.policy.codes:
        o.failures = 0
        return False
    o.failures += 1
    return not o.ejected and o.failures >= o.policy.after


def eject(o: Outlier, now: float) -> float:
    """Eject: the end time, base x (times ejected), capped."""
    o.ejections += 1
    o.failures = 0
    o.until = now + o.policy.duration(o.ejections)
    return o.until


def reinstate(o: Outlier) -> None:
    """Back in service (time up, or an alive probe); the ejection count stays, so the next
    ejection lasts longer."""
    o.until = o.hold_until = 0.0
    o.failures = 0


def retry_hold(o: Outlier, code: int, retry_after_s: int, now: float) -> bool:
    """A reply ``code`` that said Retry-After: hold the destination out at least until then
    (capped by ``retry_max_s``); an ejection that ends later still ends later.  True when
    it holds."""
    p = o.policy
    if not (p.retry_max_s and retry_after_s > 0 and code in p.retry_codes):
        return False
    o.hold_until = max(o.hold_until, now + min(retry_after_s, p.retry_max_s))
    o.until = max(o.until, o.hold_until)
    return True


def parse_retry_after(value: object) -> int:
    """Seconds of a Retry-After header (RFC 3261 20.33: ``120``, ``18000;duration=3600``,
    ``120 (in a meeting)``), or an int; 0 for anything else.  Above a day counts as a day."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, min(value, MAX_RETRY_AFTER_S))
    if not isinstance(value, str):
        return 0
    digits = value.strip().split(";")[0].split("(")[0].strip()
    return min(int(digits), MAX_RETRY_AFTER_S) if digits.isdecimal() else 0
