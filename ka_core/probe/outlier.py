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
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.probe.health import CodeSet

EJECTED_VALUE = 4
"""``ka_is_alive`` for an ejected destination (1 UP, 2 DOWN, 3 DEGRADED, -1 unknown)."""
DEFAULT_AFTER = 5
"""Envoy's ``consecutive_5xx``: used when ``KA_PASSIVE 1`` gives no count of its own."""
DEFAULT_FAILURE_CODES = CodeSet.parse("5xx,408")
"""5xx replies and 408, which Kamailio's tm uses for a local timeout."""


@dataclass(frozen=True, slots=True)
class Ejection:
    """One destination's passive-health policy (``ka_core.config.settings`` builds it)."""

    after: int = 0
    """Failures in a row that eject; 0 = passive health off."""
    codes: CodeSet = DEFAULT_FAILURE_CODES
    base_s: int = 30
    max_s: int = 300
    max_percent: int = 10
    as_down: bool = False
    """``ka_is_alive`` answers 2 (DOWN) for an ejected destination instead of 4."""

    @property
    def on(self) -> bool:
        return self.after > 0

    def duration(self, ejections: int) -> float:
        """Seconds the ``ejections``-th ejection lasts: base x count, capped."""
        return float(min(self.max_s, self.base_s * max(1, ejections)))


OFF = Ejection()


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

    @property
    def ejected(self) -> bool:
        return self.until > 0


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
    o.until = 0.0
    o.failures = 0
