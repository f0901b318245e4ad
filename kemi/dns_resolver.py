"""Host-name destinations in the pinger process (``KA_DNS 1``): the resolver thread and
the wiring of ``ka_core.names.machine.NamesMachine`` into the core thread.

Two threads, so a slow or dead DNS server never delays a ping:

* ``ResolverThread`` (its own daemon thread) sends the queries (``kemi.dns_client``:
  blocking UDP with a timeout and two tries, TCP when a reply is truncated) for the names
  its ``ResolveSchedule`` says are due, and hands every ``Resolution`` to the core thread
  through a queue, then pokes the wake pipe.  It never touches the table or ``KSR``.
* ``DnsNames`` runs in the core thread (``Pinger.run_once``): it feeds the ring entries,
  the step's events and the queued resolutions to the ``NamesMachine`` and performs what
  comes out (resolver messages, log lines, a wake-up).
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable

from ka_core.config.banner import dns_started
from ka_core.names.machine import ERR, WARN, NamesMachine, NamesOut
from ka_core.names.resolve import Resolution, run_lookup
from ka_core.names.schedule import Key, ResolveSchedule
from ka_core.names.servers import server_list, servers_text
from ka_core.uri import SipUri
from kemi.dns_client import DnsServers
from kemi.runtime import Runtime

RESOLV_CONF = "/etc/resolv.conf"
IDLE_WAIT_S = 3600.0
"""How long the thread sleeps with no name watched (a ``watch`` wakes it)."""


def _resolv_conf() -> str:
    with open(RESOLV_CONF) as conf:
        return conf.read()


class ResolverThread:
    """The resolver's own thread: ``step`` is one turn of its loop."""

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
        self._schedule = ResolveSchedule()

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
        return self._schedule.run_due(self._clock, self._resolve, self._deliver)

    def _deliver(self, key: Key, result: Resolution) -> None:
        self.results.put((key, result))
        self._on_result()

    def drain(self) -> list[tuple[Key, Resolution]]:
        """The resolutions queued so far (the core thread)."""
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.results.get_nowait())
        return out

    def _take(self, message: tuple[Key, SipUri | None]) -> None:
        self._schedule.take(*message, self._clock())

    def _loop(self) -> None:
        following: float | None = None
        while True:
            wait = IDLE_WAIT_S if following is None else max(0.0, following - self._clock())
            following = self.step(max(wait, 0.001))


class DnsNames:
    """The core thread's side: the names machine, fed and performed."""

    def __init__(
        self, rt: Runtime, resolve_fn: Callable[[SipUri], Resolution] | None = None
    ) -> None:
        self._rt = rt
        config = rt.config
        servers = server_list(config.dns_server, _resolv_conf)
        self.server = servers_text(servers)
        if resolve_fn is None:
            resolve_fn = functools.partial(
                run_lookup, DnsServers(servers).query, refresh_s=config.dns_refresh,
                naptr=bool(config.dns_naptr),
            )  # fmt: skip
        self._thread = ResolverThread(resolve_fn, rt.wake, rt.monotonic)
        self.machine = NamesMachine(rt.table, config.dns_state)

    @property
    def resolver(self) -> ResolverThread:
        return self._thread

    def start(self) -> None:
        self._rt.ksr.info(dns_started(self._rt.config, self.server))
        self._thread.start()

    def answers(self) -> list[tuple[Key, Resolution]]:
        """The resolver thread's answers since the last step."""
        return self._thread.drain()

    def perform(self, out: NamesOut) -> None:
        """The machine's I/O (its ``wake`` is the node's deadline, not ours)."""
        ksr = self._rt.ksr
        for level, text in out.logs:
            (ksr.err if level == ERR else ksr.warn if level == WARN else ksr.info)(text)
        for key, uri in out.watch:
            self._thread.watch(key, uri)
        for key in out.forget:
            self._thread.forget(key)
