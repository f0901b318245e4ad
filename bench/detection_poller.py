"""The detection benchmark's poller: the routing-path state (``is_alive`` as a SIP worker
sees it) of every trial destination on each side, every ``POLL_S``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

POLL_S = 0.005


class Poller(threading.Thread):
    """Every POLL_S, asks each side for the routing-path state of every trial URI."""

    def __init__(self, sides: dict[str, tuple[str, list[str]]]) -> None:
        super().__init__(daemon=True)
        self.sides = sides  # side -> (kamailio ip, uris as that side's is_alive wants them)
        self.socks: dict[str, socket.socket] = {}
        for side, (ip, _) in sides.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, 0))
            s.setblocking(False)
            self.socks[side] = s
        self.states: dict[str, list[int]] = {}
        self.history: dict[str, list[tuple[float, list[int]]]] = {s: [] for s in sides}
        self.stop_flag = False
        self.seq = 0
        self.lock = threading.Lock()

    def request(self, side: str) -> bytes:
        ip, uris = self.sides[side]
        port = self.socks[side].getsockname()[1]
        self.seq += 1
        return (
            f"OPTIONS sip:state@{ip}:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-poll-{self.seq};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:poll@{ip}>;tag=p{self.seq}\r\nTo: <sip:state@{ip}>\r\n"
            f"Call-ID: poll-{self.seq}@{ip}\r\nCSeq: 1 OPTIONS\r\n"
            f"X-Uris: {' '.join(uris)}\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stop_flag:
            for side, sock in self.socks.items():
                with contextlib.suppress(OSError):
                    sock.sendto(self.request(side), (self.sides[side][0], 5060))
            nxt += POLL_S
            while True:
                for side, sock in self.socks.items():
                    while True:
                        try:
                            data = sock.recv(65536)
                        except BlockingIOError:
                            break
                        now = time.time()
                        for line in data.decode("latin-1").split("\r\n"):
                            if line.lower().startswith("x-states:"):
                                states = [int(x) for x in line.split(":", 1)[1].split()]
                                with self.lock:
                                    self.states[side] = states
                                    self.history[side].append((now, states))
                remaining = nxt - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, 0.001))
            if nxt < time.monotonic() - 1:
                nxt = time.monotonic()

    def snapshot(self, side: str) -> list[int]:
        with self.lock:
            return list(self.states.get(side, []))

    def transitions(self, side: str, index: int, t0: float, t1: float) -> list[tuple[float, int]]:
        """(time, state) each time the polled state of one URI changed in [t0, t1]."""
        out: list[tuple[float, int]] = []
        with self.lock:
            for t, states in self.history[side]:
                if not t0 <= t <= t1 or index >= len(states):
                    continue
                if not out or out[-1][1] != states[index]:
                    out.append((t, states[index]))
        return out

    def first_time(self, side: str, index: int, after: float, want: int) -> float | None:
        with self.lock:
            for t, states in self.history[side]:
                if t >= after and index < len(states) and states[index] == want:
                    return t
        return None
