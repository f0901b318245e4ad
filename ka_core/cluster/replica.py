"""The replicated destination set: a last-writer-wins map with tombstones.

Each (canonical URI, owner) has one ``Entry``: present (added) or absent (deleted), stamped
with the wall time of that add or delete and the node where it happened.  Merging keeps the
entry with the larger (``ts``, ``origin``): every node that has seen the same entries holds
the same set, whatever order they arrived in, so adds and deletes racing on two nodes
converge to the later one (the node name breaks exact ties).  A delete leaves a tombstone for
``TOMBSTONE_S`` so that an older add arriving late (a partition, a lost message) cannot bring
the destination back; after that it is forgotten.  A local operation is stamped after what
the map holds (``local``), so it always wins on its own node.

The glue applies an entry to the shared table first and calls ``put`` only when that worked,
so the map never claims a destination the table refused (the digest then still differs and
the next dump retries).  ``digest`` folds the present entries (``ka_core.cluster.hashing``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ka_core.cluster.codec import Entry
from ka_core.cluster.hashing import digest_text, entry_hash

TOMBSTONE_S = 3600.0
TICK = 1e-6
Key = tuple[str, str]
"""(canonical URI, owner)."""


def newer(a: Entry, b: Entry | None) -> bool:
    """Does ``a`` win over ``b``?"""
    return b is None or (a.ts, a.origin) > (b.ts, b.origin)


class Replica:
    def __init__(self) -> None:
        self._entries: dict[Key, Entry] = {}
        self._digest = 0
        self.present = 0

    def get(self, key: str, owner: str) -> Entry | None:
        return self._entries.get((key, owner))

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def dump(self, states: dict[tuple[str, str], tuple[int, float]]) -> list[Entry]:
        """Every entry, tombstones too, each present one with the state held for it
        (``(key, owner) -> (state, measured at)``): a full dump for one node."""
        return [
            dataclasses.replace(e, state=st, state_ts=at) if e.present else e
            for e in self._entries.values()
            for st, at in [states.get((e.key, e.owner), (-1, 0.0))]
        ]

    def wins(self, entry: Entry) -> bool:
        return newer(entry, self._entries.get((entry.key, entry.owner)))

    def local(self, entry: Entry) -> Entry:
        """Stamp a local add or delete after the entry held, so it wins here."""
        held = self._entries.get((entry.key, entry.owner))
        if held is not None and not newer(entry, held):
            entry = dataclasses.replace(entry, ts=held.ts + TICK)
        return entry

    def put(self, entry: Entry) -> None:
        """Store ``entry`` (the caller checked ``wins`` and applied it)."""
        k = (entry.key, entry.owner)
        old = self._entries.get(k)
        if old is not None and old.present:
            self._digest ^= entry_hash(old.key, old.owner, old.ts)
            self.present -= 1
        stored = dataclasses.replace(entry, state=-1, state_ts=0.0)
        self._entries[k] = stored
        if stored.present:
            self._digest ^= entry_hash(stored.key, stored.owner, stored.ts)
            self.present += 1

    @property
    def digest(self) -> str:
        return digest_text(self._digest)

    def forget_tombstones(self, wall: float) -> int:
        """Drop tombstones older than ``TOMBSTONE_S``; returns how many."""
        old = [k for k, e in self._entries.items() if not e.present and wall - e.ts > TOMBSTONE_S]
        for k in old:
            del self._entries[k]
        return len(old)

    def is_stale_tombstone(self, entry: Entry, wall: float) -> bool:
        """A delete older than the tombstone lifetime: ignored, as if already forgotten."""
        return not entry.present and wall - entry.ts > TOMBSTONE_S
