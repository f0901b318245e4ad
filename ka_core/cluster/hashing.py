"""Who probes what in a cluster: rendezvous (highest-random-weight) hashing.

Every node computes, for a destination key, a weight per live node and the highest weight
owns it.  All nodes that see the same live set agree without talking, and when a node leaves
only its own destinations move (to whichever node has the next weight), so a failover moves
1/N of the table, not all of it.  A destination is hashed by its canonical URI only, so the
owners of one URI (several ``owner`` names) are probed from the same node.

The set digest is an order-independent fold (XOR) of one hash per present destination and
its add time: two nodes with the same digest hold the same destinations (up to a 64-bit
collision), which is how a node knows a peer is in sync (``ka_core.cluster.members``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

DIGEST_BYTES = 8


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest(), "big")


def weight(node: str, key: str) -> int:
    """The weight of ``node`` for destination ``key``."""
    return _h64(f"{node}\0{key}")


def owner(key: str, nodes: Sequence[str]) -> str:
    """The node that probes ``key``: the highest weight, ties (never in practice) by name.

    Raises:
        ValueError: ``nodes`` is empty (the caller always includes itself).
    """
    if not nodes:
        raise ValueError("no live node")
    return max(nodes, key=lambda n: (weight(n, key), n))


def gained(
    slots: dict[int, tuple[int, str, str]], before: Sequence[str], after: Sequence[str], me: str
) -> list[tuple[int, int]]:
    """(slot, gen) of the destinations (``slot -> (gen, key, owner)``) that ``me`` probes
    with the live set ``after`` but did not with ``before``: what a node takes over."""
    return [
        (slot, gen)
        for slot, (gen, key, _) in slots.items()
        if owner(key, after) == me and owner(key, before) != me
    ]


def entry_hash(key: str, owner_name: str, ts: float) -> int:
    """One present destination's share of the set digest (``repr`` keeps ``ts`` exact)."""
    return _h64(f"{key}\0{owner_name}\0{ts!r}")


def digest_text(value: int) -> str:
    return f"{value:016x}"
