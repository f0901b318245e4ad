"""What a SIP worker does with a reply it received (``kemi.replies`` asks, for every reply).

A reply with our Call-ID is dropped by the route (0: tm has no transaction for it) whether
or not the pinger gets it; anybody else's goes on (1).  Only a final reply whose Via branch
is the keyed hash of its Call-ID reaches the pinger: nobody who has not seen the ping can
forge one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.probe.callid import parse_callid
from ka_core.probe.wire import branch_for
from ka_core.state import changes_state
from ka_core.store.layout import FLAG_CUSTOM_POLICY
from ka_core.uri import address_tag

PASS, DROP = 1, 0
"""What the reply route returns: Kamailio goes on with the reply, or drops it."""


@dataclass(frozen=True, slots=True)
class OurReply:
    seq: int
    slot: int
    code: int


def classify(
    callid: str | None,
    code: int | None,
    branch: str | None,
    *,
    prefix: str,
    key: bytes,
    capacity: int,
) -> tuple[int, OurReply | None, str | None]:
    """(what the route returns, the reply for the pinger or None, a warning or None)."""
    ours = parse_callid(callid, prefix) if callid else None
    if ours is None or callid is None:
        return PASS, None, None
    if branch != branch_for(key, callid):
        return DROP, None, f"ignoring reply {code} with our Call-ID but not our branch"
    seq, slot = ours
    if code is None or int(code) < 200 or slot >= capacity:
        return DROP, None, None  # provisional: the ping's timeout still runs, as with tm
    return DROP, OurReply(seq, slot, int(code)), None


def wakes(state: int, flags: int, code: int, wakes_on_change: bool) -> bool:
    """A reply that changes a state wakes the pinger at once; the others wait for its next
    tick.  With a policy of its own (``FLAG_CUSTOM_POLICY``) no worker predicts a change."""
    return wakes_on_change and not flags & FLAG_CUSTOM_POLICY and changes_state(state, code)


class SourceTags:
    """``address_tag`` of reply sources, per SIP worker process: (source, tag) of each slot's
    last reply, at most ``SIZE`` slots (emptied when full), whatever the churn of addresses.

    Parsing an address costs a few µs and every reply asks; a destination answers from one
    address.  A cache by address grew with each address that ever answered (up to 11 MiB).
    """

    SIZE = 4096
    __slots__ = ("_by_slot",)

    def __init__(self) -> None:
        self._by_slot: dict[int, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._by_slot)

    def tag(self, slot: int, source: str) -> int:
        last = self._by_slot.get(slot)
        if last is not None and last[0] == source:
            return last[1]
        if len(self._by_slot) >= self.SIZE:
            self._by_slot.clear()
        tag = address_tag(source)
        self._by_slot[slot] = (source, tag)
        return tag
