"""Many SIP destinations in one thread: ``n`` UDP sockets on one address (ports ``base`` to
``base + n - 1``) that answer OPTIONS 200 and record when each request arrived, on which port
and from whom.  The cluster tests probe 300 destinations without 300 ScriptedUAS threads."""

from __future__ import annotations

import contextlib
import itertools
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from tests.harness.kamailio import _bindable
from tests.peers.uas import build_response, parse_request


@dataclass(frozen=True, slots=True)
class Arrival:
    mono: float
    port: int
    source: str


class PortFarm:
    def __init__(self, host: str, n: int) -> None:
        self.host = host
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self.base = self._bind(n)
        self._thread = threading.Thread(target=self._run, name="port-farm", daemon=True)
        self._thread.start()

    def _bind(self, n: int) -> int:
        for base in range(20000, 60000 - n, 997):
            if not all(_bindable(self.host, base + i) for i in range(0, n, 50)):
                continue
            try:
                for i in range(n):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    self._socks.append(sock)
                    sock.bind((self.host, base + i))
                    sock.setblocking(False)
                    self._sel.register(sock, selectors.EVENT_READ, base + i)
            except OSError:
                self._close_sockets()
                continue
            return base
        raise RuntimeError(f"no {n} free UDP ports on {self.host}")

    @property
    def uris(self) -> list[str]:
        return [f"sip:{self.host}:{self.base + i}" for i in range(len(self._socks))]

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:
                    continue
                now = time.monotonic()
                req = parse_request(data, "udp", source)
                if req is None or req.method != "OPTIONS":
                    continue
                with self._lock:
                    self.arrivals.append(Arrival(now, key.data, source[0]))
                with contextlib.suppress(OSError):
                    sock.sendto(build_response(req, 200), source)

    def received(self, since: float = 0.0) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.mono >= since]

    def max_gap(self, start: float, end: float) -> dict[int, float]:
        """Per port: the longest time without an OPTIONS within [start, end]."""
        times: dict[int, list[float]] = {self.base + i: [] for i in range(len(self._socks))}
        for a in self.received(start):
            if a.mono <= end:
                times[a.port].append(a.mono)
        gaps = {}
        for port, ts in times.items():
            edges = [start, *sorted(ts), end]
            gaps[port] = max(b - a for a, b in itertools.pairwise(edges))
        return gaps

    def _close_sockets(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()
        self._socks.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._close_sockets()
        self._sel.close()
