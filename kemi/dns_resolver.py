"""Host-name destinations in the pinger process (``KA_DNS 1``, ``ka_core.names.resolve``).

Theory of operation.  Two parts, so a slow or dead DNS server never delays a ping:

* ``ResolverThread`` (its own daemon thread) sends the queries (``kemi.dns_client``:
  blocking UDP with a timeout and two tries, TCP when a reply is truncated).  It keeps
  each name's re-resolution time (the records' TTL, clamped) and hands every
  ``Resolution`` to the core thread through a queue, then pokes the wake pipe.  It never
  touches the table or ``KSR``.
* ``DnsNames`` runs in the core thread (``Pinger.run_once``, after the step's events): it
  learns new names from the ring's ADDED entries, applies resolutions (inserts new targets
  as ordinary destinations, deletes gone ones), removes the targets of deleted names, and
  after any target state change writes the name's derived state and returns it as a
  ``StateChanged``, which the pinger logs and delivers like any other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ka_core.config.settings import parse_settings
from ka_core.errors import DuplicateDestination, InvalidArgument, InvalidUri, TableFull
from ka_core.events import Event, StateChanged
from ka_core.names.resolve import (
    Resolution,
    Target,
    derive_state,
    first_nameserver,
    parse_dns_server,
    server_text,
    target_uri,
)
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
from ka_core.uri import SipUri, parse_uri
from kemi.dns_client import DnsClient, resolve
from kemi.runtime import Runtime

SCAN_S = 0.25
"""How often the core thread checks for deleted names and targets."""
RESOLV_CONF = "/etc/resolv.conf"
INHERITED_FLAGS = FLAG_OWN_INTERVAL | FLAG_SOCKET | FLAG_CUSTOM_POLICY | FLAG_PAUSED
Key = tuple[int, int]
"""(slot, gen) of a name in the table."""


class ResolverThread:
    """The names to resolve and when; ``step`` does the due lookups (the thread's loop)."""

    def __init__(
        self,
        resolve_fn: Callable[[SipUri], Resolution],
        on_result: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve_fn
        self._on_result = on_result
        self._clock = clock
        self._inbox: queue.SimpleQueue[tuple[Key, SipUri | None]] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[tuple[Key, Resolution]] = queue.SimpleQueue()
        self._names: dict[Key, tuple[SipUri, float]] = {}
        self._due: list[tuple[float, Key]] = []

    def watch(self, key: Key, uri: SipUri) -> None:
        """Resolve ``uri`` now and then whenever its answer expires (any thread)."""
        self._inbox.put((key, uri))

    def forget(self, key: Key) -> None:
        self._inbox.put((key, None))

    def start(self) -> None:
        threading.Thread(target=self._loop, name="ka-dns", daemon=True).start()

    def step(self, wait_s: float = 0.0) -> float | None:
        """Take messages (waiting up to ``wait_s`` for the first), run the due lookups;
        returns when the next one is due."""
        with contextlib.suppress(queue.Empty):
            self._take(self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait())
            while True:
                self._take(self._inbox.get_nowait())
        while self._due and self._due[0][0] <= self._clock():
            due, key = heapq.heappop(self._due)
            entry = self._names.get(key)
            if entry is None or entry[1] != due:
                continue  # forgotten, or rescheduled
            try:
                result = self._resolve(entry[0])
            except Exception as exc:  # a bug here must not stop resolving the others
                result = Resolution((), 30, failed=True, reason=f"internal error: {exc!r}")
            self.results.put((key, result))
            self._on_result()
            self._schedule(key, entry[0], self._clock() + result.ttl_s)
        return self._due[0][0] if self._due else None

    def _take(self, message: tuple[Key, SipUri | None]) -> None:
        key, uri = message
        if uri is None:
            self._names.pop(key, None)
        else:
            self._schedule(key, uri, self._clock())

    def _schedule(self, key: Key, uri: SipUri, due: float) -> None:
        self._names[key] = (uri, due)
        heapq.heappush(self._due, (due, key))

    def _loop(self) -> None:
        following: float | None = None
        while True:
            wait = 3600.0 if following is None else max(0.0, following - self._clock())
            following = self.step(max(wait, 0.001))


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


class DnsNames:
    """The core thread's side: names, their targets in the table, derived states."""

    def __init__(
        self, rt: Runtime, resolve_fn: Callable[[SipUri], Resolution] | None = None
    ) -> None:
        self._rt = rt
        config = rt.config
        self._mode = config.dns_state
        address, port = parse_dns_server(config.dns_server)
        if not address:
            try:
                with open(RESOLV_CONF) as conf:
                    address = first_nameserver(conf.read())
            except OSError:
                address = first_nameserver("")
        self.server = server_text(address, port)
        if resolve_fn is None:
            client = DnsClient(address, port)
            resolve_fn = functools.partial(resolve, client, refresh_s=config.dns_refresh)
        self._thread = ResolverThread(resolve_fn, rt.wake, rt.monotonic)
        self._names: dict[Key, _Name] = {}
        self._by_target: dict[tuple[str, str], set[Key]] = {}
        self._scanned = float("-inf")

    @property
    def resolver(self) -> ResolverThread:
        return self._thread

    def start(self) -> None:
        self._rt.ksr.info(
            f"DNS: host names resolved by ka-kemi via {self.server}, refresh up to "
            f"{self._rt.config.dns_refresh} s, state {self._mode}"
        )
        self._thread.start()

    def notice(self, entries: Sequence[RingEntry]) -> None:
        """Names among the destinations just added: start resolving them."""
        try:
            self._notice(entries)
        except Exception:  # a bug here must not cost the step
            self._rt.ksr.err(f"DNS: internal error: {traceback.format_exc()}")

    def _notice(self, entries: Sequence[RingEntry]) -> None:
        table = self._rt.table
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
            self._thread.watch(key, uri)

    def apply(self, events: Sequence[Event], wall: float) -> list[StateChanged]:
        """Resolutions in, gone names and targets out; the names' derived state changes."""
        try:
            return self._apply(events, wall)
        except Exception:  # a bug here must not cost the step's own events
            self._rt.ksr.err(f"DNS: internal error: {traceback.format_exc()}")
            return []

    def _apply(self, events: Sequence[Event], wall: float) -> list[StateChanged]:
        changed: dict[Key, tuple[int, float]] = {}
        with contextlib.suppress(queue.Empty):
            while True:
                key, result = self._thread.results.get_nowait()
                name = self._names.get(key)
                if name is not None and self._resolved(name, result, wall):
                    changed.setdefault(key, (0, 0.0))
        now = self._rt.monotonic()
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
            states = [self._rt.table.state_at(c.slot) for c in name.children.values()]
            new = derive_state(states, self._mode)
            if new is not name.state and self._rt.table.set_state(name.slot, name.gen, new, wall):
                old, name.state = name.state, new
                out.append(
                    StateChanged(
                        name.uri.display, name.owner, old, new, name.state_cb, name.user, code,
                        rtt_ms,
                    )
                )  # fmt: skip
        return out

    # -- internals ---------------------------------------------------------------------

    def _log(self, name: _Name, text: str, warn: bool = False) -> None:
        line = f"DNS: destination {name.uri.display} owner {name.owner}: {text}"
        (self._rt.ksr.warn if warn else self._rt.ksr.info)(line)

    def _resolved(self, name: _Name, result: Resolution, wall: float) -> bool:
        """Apply one resolution; True when the target set changed (or was first known)."""
        if result.failed:
            if result.reason != name.problem:
                kept = f"keeping {len(name.children)} targets" if name.resolved else "no targets"
                self._log(name, f"lookup failed: {result.reason}; {kept}", warn=True)
                name.problem = result.reason
            if name.resolved:
                return False
        elif not result.targets:
            if result.reason != name.problem:
                self._log(name, f"{result.reason}: no targets (DOWN)", warn=True)
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
        table = self._rt.table
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
            self._log(name, f"target {text} not added: {exc}", warn=True)
            return False
        self._log(name, f"target {text} added")
        self._adopt(name, target, _Child(slot, gen, uri.display, owned=True))
        self._rt.wake()  # the prober adopts it at once, so its first ping is on time
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
        if child.owned and self._rt.table.remove_slot(child.slot, child.gen):
            self._log(name, f"target {child.uri} removed: {why}")

    def _scan(self, name: _Name) -> bool:
        """Deleted name: its targets go too.  Deleted targets: forgotten (the next
        resolution adds them again).  Pause follows the name.  True if targets changed."""
        table = self._rt.table
        key = (name.slot, name.gen)
        if not table.is_used(name.slot, name.gen):
            for target in list(name.children):
                self._drop(name, target, "name deleted")
            del self._names[key]
            self._thread.forget(key)
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
