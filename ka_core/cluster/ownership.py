"""Which destinations this node probes: every destination the cluster machine knows (slot,
gen, key, owner) against the live set, by rendezvous hashing (``ka_core.cluster.hashing``).

The prober asks ``skips`` for every due ping, so answers are cached per live-set epoch; the
count of destinations probed here (heartbeats, ``keepalive.cluster``) is recounted only when
the live set or the destinations change.
"""

from __future__ import annotations

from ka_core.cluster.hashing import gained, owner

RETIRED_MAX = 4096
"""A delete is seen within one pinger step of its slot's reuse: a few at most in practice."""


class Ownership:
    def __init__(self, me: str, mode: str) -> None:
        self.me = me
        self.everyone_probes = mode == "all"
        """``KA_CLUSTER_MODE all``: every node probes every destination."""
        self.live: tuple[str, ...] = (me,)
        self.slots: dict[int, tuple[int, str, str]] = {}
        """slot -> (gen, key, owner) of every destination in the table."""
        self._epoch = 0
        self._owned: dict[int, tuple[int, int, bool]] = {}
        """slot -> (gen, epoch, skip): ``skips`` cached per live-set epoch."""
        self._retired: dict[tuple[int, int], tuple[str, str]] = {}
        """(slot, gen) -> (key, owner) of destinations whose slot was reused before their
        delete was seen (at most ``RETIRED_MAX``, oldest dropped)."""
        self._changes = 0
        """Bumped when ``slots`` changes: ``probing`` recounts only then."""
        self._probing = 0
        self._probing_version = (-1, -1)

    def learn(self, slot: int, gen: int, key: str, owner_name: str) -> None:
        held = self.slots.get(slot)
        if held is not None and held[0] != gen:
            # the slot was freed and taken again before its ring entry arrived: keep what
            # was there, so the delete still goes out (``removed``)
            self._retired[(slot, held[0])] = held[1:]
            while len(self._retired) > RETIRED_MAX:
                del self._retired[next(iter(self._retired))]
        self.slots[slot] = (gen, key, owner_name)
        self._changes += 1

    def removed(self, slot: int, gen: int) -> tuple[str, str] | None:
        """The (key, owner) a deleted (slot, gen) held, forgotten now; None if unknown."""
        known = self.slots.get(slot)
        if known is not None and known[0] == gen:
            self.forget(slot)
            return known[1:]
        return self._retired.pop((slot, gen), None)

    def forget(self, slot: int) -> None:
        self.slots.pop(slot, None)
        self._changes += 1

    def forget_all(self) -> None:
        self.slots.clear()
        self._retired.clear()
        self._changes += 1

    def skips(self, slot: int, gen: int) -> bool:
        """True when another live node probes this destination."""
        if self.everyone_probes or len(self.live) == 1:
            return False
        hit = self._owned.get(slot)
        if hit is not None and hit[0] == gen and hit[1] == self._epoch:
            return hit[2]
        known = self.slots.get(slot)
        if known is None or known[0] != gen:
            return False  # not learnt yet: probe it (an overlap, never a gap)
        skip = owner(known[1], self.live) != self.me
        self._owned[slot] = (gen, self._epoch, skip)
        return skip

    def move_to(self, live: tuple[str, ...]) -> list[tuple[int, int]]:
        """Take a new live set; returns the (slot, gen) this node gains from nodes that left
        (none in mode ``all``, where it probes everything anyway)."""
        mine: list[tuple[int, int]] = []
        if set(self.live) - set(live) and not self.everyone_probes:
            mine = gained(self.slots, self.live, live, self.me)
        self.live, self._epoch = live, self._epoch + 1
        self._owned.clear()
        return mine

    def probing(self) -> int:
        """How many destinations this node probes (recounted when the live set changes)."""
        if self.everyone_probes or len(self.live) == 1:
            return len(self.slots)
        version = (self._epoch, self._changes)
        if self._probing_version != version:
            self._probing = sum(not self.skips(slot, g) for slot, (g, _, _) in self.slots.items())
            self._probing_version = version
        return self._probing
