"""A destination's health policy: which final codes count as alive, how many outcomes in a
row flip a state, the latency threshold, and passive health's ``Ejection``.  Vocabulary
shared by the settings parser (which builds it), the store (which keeps it per destination)
and the prober (which applies it in ``ka_core.probe.health`` and ``ka_core.probe.outlier``),
so it sits below all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.errors import InvalidArgument
from ka_core.state import Outcome

FINAL_CODES = range(200, 700)


@dataclass(frozen=True, slots=True)
class CodeSet:
    """Final reply codes that count as alive, e.g. ``2xx,404,486`` or ``any,!408,!503``.

    Items: ``Nxx`` (a class), ``NNN`` (a code), ``any`` (every final code 200-699); an item
    prefixed with ``!`` removes codes.  Removals win, whatever their position.
    """

    text: str
    codes: frozenset[int]

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    @classmethod
    def parse(cls, text: str) -> CodeSet:
        added: set[int] = set()
        removed: set[int] = set()
        items = [i.strip().lower() for i in text.split(",") if i.strip()]
        if not items:
            raise InvalidArgument(f"alive codes: empty list {text!r}")
        for item in items:
            target = removed if item.startswith("!") else added
            target.update(_codes_of(item.lstrip("!"), text))
        codes = frozenset(added - removed)
        if not codes:
            raise InvalidArgument(f"alive codes: {text!r} leaves no code alive")
        return cls(",".join(items), codes)


def _codes_of(item: str, text: str) -> range:
    if item == "any":
        return FINAL_CODES
    if len(item) == 3 and item[0] in "23456" and item[1:] == "xx":
        start = int(item[0]) * 100
        return range(start, start + 100)
    if len(item) == 3 and item.isdigit() and int(item) in FINAL_CODES:
        return range(int(item), int(item) + 1)
    raise InvalidArgument(f"alive codes: bad item {item!r} in {text!r} (use 2xx, 404, any, !503)")


DEFAULT_ALIVE = CodeSet.parse("2xx")


@dataclass(frozen=True, slots=True)
class Policy:
    """How one destination's replies are judged (``ka_core.settings`` builds it)."""

    down_after: int = 1
    up_after: int = 1
    alive: CodeSet = DEFAULT_ALIVE
    degraded_ms: int = 0
    """0: no latency threshold, so never DEGRADED."""
    degraded_as_down: bool = False

    @property
    def is_default(self) -> bool:
        """True when every reply's effect is C's: the SIP workers' fast wake-up test holds."""
        return self == DEFAULT_POLICY

    def judge(self, code: int, replied: bool, rtt_ms: float) -> Outcome:
        """A timeout (no reply) always fails, whatever the alive set says."""
        if not replied or code not in self.alive:
            return Outcome.FAIL
        if self.degraded_ms and rtt_ms > self.degraded_ms:
            return Outcome.FAIL if self.degraded_as_down else Outcome.SLOW
        return Outcome.OK


DEFAULT_POLICY = Policy()


DEFAULT_AFTER = 5
"""Envoy's ``consecutive_5xx``: used when ``KA_PASSIVE 1`` gives no count of its own."""
DEFAULT_FAILURE_CODES = CodeSet.parse("5xx,408")
"""5xx replies and 408, which Kamailio's tm uses for a local timeout."""
DEFAULT_RETRY_CODES = CodeSet.parse("503")
MAX_RETRY_AFTER_S = 86400
DEFAULT_EJECT_S, DEFAULT_EJECT_MAX_S, DEFAULT_EJECT_MAX_PERCENT = 30, 300, 10
"""The first ejection's seconds, the cap, and the largest share of a group out at once."""


@dataclass(frozen=True, slots=True)
class Ejection:
    """One destination's passive-health policy (``ka_core.settings`` builds it; the rules
    are in ``ka_core.probe.outlier``)."""

    after: int = 0
    """Failures in a row that eject; 0 = passive health off."""
    codes: CodeSet = DEFAULT_FAILURE_CODES
    base_s: int = DEFAULT_EJECT_S
    max_s: int = DEFAULT_EJECT_MAX_S
    max_percent: int = DEFAULT_EJECT_MAX_PERCENT
    as_down: bool = False
    """``ka_is_alive`` answers 2 (DOWN) for an ejected destination instead of 4."""
    retry_codes: CodeSet = DEFAULT_RETRY_CODES
    retry_max_s: int = 0
    """A reply in ``retry_codes`` with Retry-After holds the destination out for that long,
    at most this many seconds; 0 = Retry-After is ignored."""

    @property
    def on(self) -> bool:
        return self.after > 0

    def duration(self, ejections: int) -> float:
        """Seconds the ``ejections``-th ejection lasts: base x count, capped."""
        return float(min(self.max_s, self.base_s * max(1, ejections)))


OFF = Ejection()
