"""Selection: one live destination of a group, for routing.  A destination's group is its
``group`` setting, or else its owner.

Theory of operation.  A SIP worker calls ``Selector.select(table, group, alg)``; the answer
is the group's candidates in the order to try them (the first goes into ``$du``, the rest
wait in an xavp for ``ka_next`` in failure_route).  The selector is per process: it keeps
each group's members (slot, generation, URI, ``priority``, ``weight``) and their unlocked
state readers, and reads them again only when the table's membership counter moved (any
add or delete) or a member's generation changed.  So a call costs one read of the counter
plus one unlocked read of (gen, used, state, flags) per member: O(group), no parse, no
lock; only the first call after a change scans the table (O(table), per-slot locks).

Algorithms (``ALGORITHMS``):

* ``first``: by ``priority`` (lower first), then add order.
* ``rr``: round robin over the live members, in ``first``'s order; the turn is per process
  (each SIP worker rotates on its own, so the spread is even over many calls, not strictly
  alternating across workers).
* ``weight``: smooth weighted round robin by ``weight`` (default 1), per process as ``rr``.
* ``rtt``: lowest RTT EWMA first; members without one (never answered) last, in ``first``'s
  order.

Live means UNKNOWN (as ``ka_is_alive``'s 1), UP, and DEGRADED unless ``skip_degraded``; DOWN
and ejected (``FLAG_EJECTED``) members are left out.  Panic rule: when fewer than
``panic_percent`` of the members are live, every member is a candidate (in the algorithm's
order), as Envoy's panic threshold; 0 = never.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ka_core.errors import InvalidArgument, UnknownDestination
from ka_core.settings import parse_settings
from ka_core.state import State
from ka_core.store.layout import FLAG_EJECTED, USED
from ka_core.store.table import SharedTable

ALGORITHMS = ("first", "rr", "weight", "rtt")
NO_RTT = float("inf")
MAX_GROUPS = 1024
"""Groups a process keeps; more (a script selecting by ever-new names) empties the cache."""


@dataclass(frozen=True, slots=True)
class Member:
    slot: int
    gen: int
    uri: str
    priority: int = 0
    weight: int = 1


@dataclass(slots=True)
class Group:
    """One group as this process last read it, with its round-robin state."""

    membership: int
    members: tuple[Member, ...]
    looks: tuple[Callable[[], tuple[int, int, int, int]], ...]
    rtts: tuple[Callable[[], tuple[float, ...]], ...]
    turn: int = 0
    """``rr``: picks so far."""
    credit: list[int] = field(default_factory=list)
    """``weight``: each member's current credit (smooth weighted round robin)."""


def members_of(table: SharedTable, group: str) -> tuple[Member, ...]:
    """The group's destinations in ``first`` order (priority, then add order)."""
    rows = table.rows(("slot", "gen", "uri", "owner", "settings", "added"))
    found = []
    for slot, gen, uri, owner, text, added in rows:
        settings = parse_settings(text, internal=True)
        if (settings.group or owner) != group or settings.target_of:
            continue  # a ``KA_DNS`` target: its host name is the member (tm resolves it)
        member = Member(slot, gen, uri, settings.priority, settings.weight)
        found.append((settings.priority, added, slot, member))
    return tuple(member for *_, member in sorted(found, key=lambda row: row[:3]))


def is_live(state: int, flags: int, skip_degraded: bool) -> bool:
    if flags & FLAG_EJECTED or state == State.DOWN:
        return False
    return not (skip_degraded and state == State.DEGRADED)


def check_algorithm(alg: object) -> str:
    if alg not in ALGORITHMS:
        raise InvalidArgument(f"unknown algorithm {alg!r} ({', '.join(ALGORITHMS)})")
    return str(alg)


class Selector:
    """Per-process group cache and rotation state; see the module docstring."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}

    def select(
        self,
        table: SharedTable,
        name: str,
        alg: str,
        *,
        skip_degraded: bool = False,
        panic_percent: int = 0,
    ) -> list[str]:
        """The group's candidate URIs, best first; empty when none is live (and no panic).

        Raises:
            InvalidArgument: an unknown algorithm.
            UnknownDestination: no destination is in this group.
        """
        check_algorithm(alg)
        group = self._group(table, name)
        if not group.members:
            raise UnknownDestination(f"no destinations in group {name!r}")
        live, every = [], []
        for at, look in enumerate(group.looks):
            gen, used, state, flags = look()
            if gen != group.members[at].gen or used != USED:
                continue  # deleted under us: the membership counter catches it next call
            every.append(at)
            if is_live(state, flags, skip_degraded):
                live.append(at)
        if panic_percent and len(live) * 100 < panic_percent * len(group.members):
            live = every
        return [group.members[at].uri for at in self._order(group, live, alg)]

    def _group(self, table: SharedTable, name: str) -> Group:
        membership = table.header.membership
        group = self._groups.get(name)
        if group is not None and group.membership == membership:
            return group
        members = members_of(table, name)  # none: kept too, a typo costs no scan per call
        if len(self._groups) >= MAX_GROUPS:
            self._groups.clear()
        looks = tuple(table.hot_reader(m.slot) for m in members)
        rtts = tuple(table.field_reader(m.slot, "rtt_ewma") for m in members)
        turn = 0 if group is None else group.turn  # an add elsewhere does not restart ``rr``
        group = Group(membership, members, looks, rtts, turn, [0] * len(members))
        self._groups[name] = group
        return group

    def _order(self, group: Group, live: list[int], alg: str) -> list[int]:
        if not live or alg == "first":
            return live
        if alg == "rr":
            turn = group.turn % len(live)
            group.turn += 1
            return live[turn:] + live[:turn]
        if alg == "weight":
            return _weighted(group, live)
        rtt = {at: group.rtts[at]()[0] or NO_RTT for at in live}
        return sorted(live, key=lambda at: rtt[at])  # stable: ties keep ``first``'s order


def _weighted(group: Group, live: list[int]) -> list[int]:
    """Smooth weighted round robin (as nginx's): every live member gains its weight, the
    richest is picked and pays the total; the others follow by weight."""
    weights = {at: group.members[at].weight for at in live}
    for at in live:
        group.credit[at] += weights[at]
    pick = max(live, key=lambda at: group.credit[at])
    group.credit[pick] -= sum(weights.values())
    rest = sorted((at for at in live if at != pick), key=lambda at: -weights[at])
    return [pick, *rest]
