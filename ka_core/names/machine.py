"""Host-name destinations (``KA_DNS 1``) in the pinger's core thread, sans I/O.

Theory of operation.  A destination whose host is a name (``FLAG_NAME``) is never pinged;
its addresses are.  ``NamesMachine`` learns such names from the ring's ADDED entries and
asks for them to be resolved (``NamesOut.watch``; the resolver thread in
``kemi.dns_resolver`` does the lookups and keeps a ``ResolveSchedule``).  Each
``Resolution`` handed back turns into table writes: new addresses are inserted as ordinary
destinations (``FLAG_TARGET``, the name's settings, flags and interval), gone ones
deleted.  A failed lookup keeps the last good targets; an empty answer (NXDOMAIN, no
records) drops them all, which makes the name DOWN.  A periodic scan drops the targets of
deleted names (and forgets those names), forgets deleted targets (the next answer adds
them again) and makes pause follow the name.  Whenever a name's targets or their states
change, the name's state is derived from them (``derive_state``), written, and returned
as a ``StateChanged`` carrying the code and RTT of the target's change that caused it.

Rules: the machine never blocks, reads no clock (``now`` is monotonic, ``wall`` the epoch
time written into the table) and does no I/O; everything it wants done outside comes out
in ``NamesOut``.  A bug in it costs a log line, never the step.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from ka_core.errors import DuplicateDestination, InvalidArgument, InvalidUri, TableFull
from ka_core.events import Event, StateChanged
from ka_core.names.resolve import Resolution, Target, derive_state, target_uri
from ka_core.names.schedule import Key
from ka_core.settings import parse_settings
from ka_core.state import State
from ka_core.store.layout import (
    FLAG_CUSTOM_POLICY,
    FLAG_NAME,
    FLAG_OWN_INTERVAL,
    FLAG_PAUSED,
    FLAG_SOCKET,
    FLAG_TARGET,
)
from ka_core.store.ring import KIND_ADDED, RingEntry
from ka_core.store.table import SharedTable
from ka_core.uri import SipUri, parse_uri

SCAN_S = 0.25
"""How often ``apply`` looks for deleted names and targets."""
INHERITED_FLAGS = FLAG_OWN_INTERVAL | FLAG_SOCKET | FLAG_CUSTOM_POLICY | FLAG_PAUSED
"""What a target takes over from its name's flags."""
INFO, WARN, ERR = "info", "warn", "err"
"""Log levels of ``NamesOut.logs``."""


@dataclass(slots=True)
class NamesOut:
    """What the machine wants done outside: resolver messages, log lines, a wake-up."""

    watch: list[tuple[Key, SipUri]] = field(default_factory=list)
    """Names to resolve now and whenever their answer expires."""
    forget: list[Key] = field(default_factory=list)
    """Names deleted: never resolve them again."""
    logs: list[tuple[str, str]] = field(default_factory=list)
    """(level, text): ``INFO``, ``WARN`` or ``ERR``."""
    wake: bool = False
    """A target was inserted: step the prober again at once so its first ping is on time."""


@dataclass(slots=True)
class _Child:
    slot: int
    gen: int
    uri: str
    owned: bool
    """False: the user's own destination with the same URI and owner (counted, not managed)."""


@dataclass(slots=True)
class _Name:
    slot: int
    gen: int
    uri: SipUri
    owner: str
    state: State
    state_cb: str
    user: str
    resolved: bool = False
    problem: str = ""
    paused: bool = False
    children: dict[Target, _Child] = field(default_factory=dict)


class NamesMachine:
    """Names, their targets in the table, derived states.  Two entry points, each called
    once per core step: ``notice`` (ring entries) before the prober's step, ``apply``
    (its events and the resolutions) after it."""

    def __init__(self, table: SharedTable, mode: str = "any") -> None:
        """``mode``: ``KA_DNS_STATE`` (``any``: UP when a target is; ``all``: when all are)."""
        self._table = table
        self._mode = mode
        self._names: dict[Key, _Name] = {}
        self._by_target: dict[tuple[str, str], set[Key]] = {}
        self._scanned = float("-inf")
        self._out = NamesOut()

    def notice(self, entries: Sequence[RingEntry]) -> NamesOut:
        """Names among the destinations just added: ``watch`` them."""
        self._out = NamesOut()
        try:
            self._notice(entries)
        except Exception:  # a bug here must not cost the step
            self._out.logs.append((ERR, f"DNS: internal error: {traceback.format_exc()}"))
        return self._out

    def apply(
        self,
        events: Sequence[Event],
        resolutions: Sequence[tuple[Key, Resolution]],
        now: float,
        wall: float,
    ) -> tuple[list[StateChanged], NamesOut]:
        """Resolutions in, gone names and targets out (scanned at most every ``SCAN_S``
        of ``now``); the names' derived state changes, caused by these ``events`` (the
        prober's) or by their target sets changing."""
        self._out = NamesOut()
        try:
            changes = self._apply(events, resolutions, now, wall)
        except Exception:  # a bug here must not cost the step's own events
            self._out.logs.append((ERR, f"DNS: internal error: {traceback.format_exc()}"))
            changes = []
        return changes, self._out

    # -- internals ---------------------------------------------------------------------

    def _notice(self, entries: Sequence[RingEntry]) -> None:
        table = self._table
        for entry in entries:
            if entry.kind != KIND_ADDED or not table.flags(entry.slot) & FLAG_NAME:
                continue
            if not table.is_used(entry.slot, entry.gen):
                continue
            rec = table.read(entry.slot)
            try:
                uri = parse_uri(rec.uri)
            except InvalidUri:
                continue
            key = (entry.slot, entry.gen)
            self._names[key] = _Name(
                entry.slot, entry.gen, uri, rec.owner, rec.state, rec.state_cb, rec.user
            )
            self._out.watch.append((key, uri))

    def _apply(
        self,
        events: Sequence[Event],
        resolutions: Sequence[tuple[Key, Resolution]],
        now: float,
        wall: float,
    ) -> list[StateChanged]:
        changed: dict[Key, tuple[int, float]] = {}
        for key, result in resolutions:
            name = self._names.get(key)
            if name is not None and self._resolved(name, result, wall):
                changed.setdefault(key, (0, 0.0))
        if self._names and now - self._scanned >= SCAN_S:
            self._scanned = now
            for key in list(self._names):
                if self._scan(self._names[key]):
                    changed.setdefault(key, (0, 0.0))
        for event in events:
            if isinstance(event, StateChanged):
                for key in self._by_target.get((event.uri, event.owner), ()):
                    changed[key] = (event.code, event.rtt_ms)
        out = []
        for key, (code, rtt_ms) in changed.items():
            name = self._names.get(key)
            if name is None or not name.resolved:
                continue
            states = [self._table.state_at(c.slot) for c in name.children.values()]
            new = derive_state(states, self._mode)
            if new is name.state:
                continue
            change = self._table.set_state(name.slot, name.gen, new, wall, code, rtt_ms)
            if change is None:
                continue
            name.state = new
            out.append(change)
        return out

    def _log(self, name: _Name, text: str, level: str = INFO) -> None:
        self._out.logs.append(
            (level, f"DNS: destination {name.uri.display} owner {name.owner}: {text}")
        )

    def _resolved(self, name: _Name, result: Resolution, wall: float) -> bool:
        """Apply one resolution; True when the target set changed (or was first known)."""
        if result.failed:
            if result.reason != name.problem:
                kept = f"keeping {len(name.children)} targets" if name.resolved else "no targets"
                self._log(name, f"lookup failed: {result.reason}; {kept}", WARN)
                name.problem = result.reason
            if name.resolved:
                return False
        elif not result.targets:
            if result.reason != name.problem:
                self._log(name, f"{result.reason}: no targets (DOWN)", WARN)
            name.problem = result.reason
        elif name.problem:
            self._log(name, f"resolves again: {len(result.targets)} targets")
            name.problem = ""
        first = not name.resolved
        name.resolved = True
        wanted = set(result.targets)
        changed = first
        for target in [t for t in name.children if t not in wanted]:
            self._drop(name, target, "no longer in DNS")
            changed = True
        for target in result.targets:
            if target not in name.children:
                changed = self._insert(name, target, wall) or changed
        return changed

    def _insert(self, name: _Name, target: Target, wall: float) -> bool:
        table = self._table
        text = target_uri(name.uri, target)
        try:
            uri = parse_uri(text)
            parent = table.read(name.slot)
            settings = dataclasses.replace(
                parse_settings(parent.settings, internal=True), target_of=name.uri.display
            )
            flags = table.flags(name.slot) & INHERITED_FLAGS | FLAG_TARGET
            slot, gen = table.insert(
                uri, name.owner, interval_ms=table.interval_ms(name.slot), wall=wall,
                response_cb=parent.response_cb, user=parent.user, settings=settings.text,
                flags=flags,
            )  # fmt: skip
        except DuplicateDestination:
            slot = table.find(uri.key, name.owner)
            if slot < 0:
                return False
            existing = table.read(slot)
            self._log(name, f"target {text} is already a destination of its own: counted, kept")
            self._adopt(name, target, _Child(slot, existing.gen, existing.uri, owned=False))
            return True
        except (InvalidUri, InvalidArgument, TableFull) as exc:
            self._log(name, f"target {text} not added: {exc}", WARN)
            return False
        self._log(name, f"target {text} added")
        self._adopt(name, target, _Child(slot, gen, uri.display, owned=True))
        self._out.wake = True
        return True

    def _adopt(self, name: _Name, target: Target, child: _Child) -> None:
        name.children[target] = child
        self._by_target.setdefault((child.uri, name.owner), set()).add((name.slot, name.gen))

    def _drop(self, name: _Name, target: Target, why: str) -> None:
        child = name.children.pop(target)
        keys = self._by_target.get((child.uri, name.owner), set())
        keys.discard((name.slot, name.gen))
        if not keys:
            self._by_target.pop((child.uri, name.owner), None)
        if child.owned and self._table.remove_slot(child.slot, child.gen):
            self._log(name, f"target {child.uri} removed: {why}")

    def _scan(self, name: _Name) -> bool:
        """Deleted name: its targets go too.  Deleted targets: forgotten (the next
        resolution adds them again).  Pause follows the name.  True if targets changed."""
        table = self._table
        key = (name.slot, name.gen)
        if not table.is_used(name.slot, name.gen):
            for target in list(name.children):
                self._drop(name, target, "name deleted")
            del self._names[key]
            self._out.forget.append(key)
            return False
        changed = False
        for target, child in list(name.children.items()):
            if not table.is_used(child.slot, child.gen):
                self._drop(name, target, "deleted")
                changed = True
        paused = bool(table.flags(name.slot) & FLAG_PAUSED)
        if paused != name.paused:
            name.paused = paused
            for child in name.children.values():
                if child.owned:
                    table.pause_slot(child.slot, child.gen, paused)
        return changed
