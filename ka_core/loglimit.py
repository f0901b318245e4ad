"""Rate limit for log lines that can repeat on every call (a bad URI in ``ka_is_alive`` on
each request, a pinger step failing on each tick).

Per process (each SIP worker has its own): the first line of a kind is logged at once, then
at most one per ``window_s``; the next one logged says how many were left out.  The kind is
the caller's (the function and the message), so one noisy error does not hide another; past
``MAX_KINDS`` kinds in a window (messages that differ each call: URIs from the network) the
new ones share one kind.  Time is the caller's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_S = 10.0
MAX_KINDS = 64
OVERFLOW = "\0overflow"


@dataclass(slots=True)
class LogLimiter:
    window_s: float = WINDOW_S
    _kinds: dict[str, tuple[float, int]] = field(default_factory=dict)
    """kind -> (when the last line was logged, lines left out since)."""

    def admit(self, kind: str, now: float) -> int | None:
        """None: leave this line out; otherwise log it, with the returned number of lines
        of this kind left out before it (0: none)."""
        if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
            for old, (logged, _) in list(self._kinds.items()):
                if now - logged >= self.window_s:
                    del self._kinds[old]
            if len(self._kinds) >= MAX_KINDS:
                kind = OVERFLOW
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self.window_s:
            self._kinds[kind] = (last[0], last[1] + 1)
            return None
        self._kinds[kind] = (now, 0)
        return 0 if last is None else last[1]

    def text(self, line: str, left_out: int) -> str:
        """``line`` with the count of the lines left out before it, if any."""
        if not left_out:
            return line
        return f"{line} ({left_out} more like it not logged since the previous one)"
