"""What the prober hands its glue: the pings to send (``Ping``) and, per step, everything
else it asks for (``Step``).  Kept apart from ``ka_core.probe.prober`` so each stays small;
the prober re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.events import Event
from ka_core.settings import DEFAULT_METHOD


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs per ping
class Ping:
    """One OPTIONS to send; ``seq`` goes into the Call-ID to match the reply."""

    seq: int
    slot: int
    gen: int
    uri: str
    from_uri: str = ""
    """The destination's own From URI; empty: ``ping_from``."""
    socket: str = ""
    """The destination's sending socket; empty: Kamailio chooses."""
    transport: str = "udp"
    ipv6: bool = False
    """Of the destination's host: the listener a ping leaves from has the same family."""
    hop: str = ""
    """Where it goes, with the transport spelled out (``corex.sendx`` needs it)."""
    method: str = DEFAULT_METHOD
    auth: str = ""
    """An ``Authorization`` header line answering a challenge (``ka_core.probe.auth_hooks``)."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one ``Prober.step`` asks of the glue."""

    pings: list[Ping]
    """The pings due now (already handed to ``send`` when one was given)."""
    resent: list[Ping]
    """UDP pings sent again (idem)."""
    events: list[Event]
    """Log them, run their callbacks."""
    deadline: float | None
    """Call ``step`` again at this monotonic time at the latest (None: only when woken)."""
