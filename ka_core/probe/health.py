"""The health model: which replies count as alive, how many in a row flip a state, when a
destination is DEGRADED, and how far apart a DOWN destination is probed.

Theory of operation.  Each probe ends in one of three outcomes: ``OK`` (a final reply whose
code is in the destination's alive set, within the latency threshold), ``SLOW`` (alive, but
its round trip took longer than ``degraded_ms``) or ``FAIL`` (any other final reply, or none
within the ping timeout).  Consecutive outcomes are counted: ``down_after`` FAILs in a row
make a destination DOWN, ``up_after`` alive replies in a row (OK or SLOW) take a DOWN or
UNKNOWN destination out of it.  An alive destination follows its latest reply at once: UP
on OK, DEGRADED on SLOW (or, with ``degraded_as_down``, a SLOW counts as a FAIL).

With the defaults (``2xx``, 1 and 1, no latency threshold) this is exactly the C module:
every 2xx makes a destination UP, every other outcome makes it DOWN.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.errors import InvalidArgument
from ka_core.state import TRANSITIONS, Outcome, State

FINAL_CODES = range(200, 700)
MAX_BACKOFF_SHIFT = 16


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
    """How one destination's replies are judged (``ka_core.config.settings`` builds it)."""

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


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    successes: int
    failures: int


def transition(state: State, successes: int, failures: int, outcome: Outcome, p: Policy) -> Verdict:
    """The next state (looked up in ``TRANSITIONS``) and streaks after one outcome: what the
    table's one state writer (``SharedTable.write_state``) stores; it returns the event."""
    if outcome is Outcome.FAIL:
        failures, successes = failures + 1, 0
        return Verdict(TRANSITIONS[state, outcome, failures >= p.down_after], 0, failures)
    successes, failures = successes + 1, 0
    return Verdict(TRANSITIONS[state, outcome, successes >= p.up_after], successes, 0)


def backoff_interval(interval_s: float, failures: int, p: Policy, cap_s: float) -> float:
    """Seconds to the next ping of a destination: doubled for each failure past the one that
    made it DOWN, up to ``cap_s`` (0: never backs off)."""
    extra = failures - p.down_after
    if cap_s <= 0 or extra <= 0:
        return interval_s
    return max(interval_s, min(cap_s, interval_s * (1 << min(extra, MAX_BACKOFF_SHIFT))))
