"""Start-up: Kamailio start to the first ping seen by a peer, with N destinations in
``KA_DESTINATION`` (issue 31 item 3: 100,000 ready in ≤ 1 s, 1,000,000 in ≤ 10 s).

Each run is one Kamailio (``children=2``, ``-x fm``, ``-m 64``) whose destinations are
``127.47.X.Y:port`` (this benchmark's own range), interval 30 s.  The start-up list is
pinged in list order spread over the interval, so the first destinations are pinged first:
UDP sockets bound on the first ``WATCHED`` of them take the kernel receive time of the first
datagram.  ``ready_s`` is Kamailio start to that datagram.  A run with one destination gives
Kamailio's own fixed start-up (its cfg, app_python3, the forks), reported apart.

``python -m bench.startup [N ...] [--reps 3]`` (default 1 and 100,000).
"""

from __future__ import annotations

import argparse
import select
import socket
import time
from pathlib import Path

from bench.kamailio import KaKemi, ka_defines
from bench.procs import stop_all, workdir

PORT0 = 15300
PER_PORT = 250 * 256
"""127.47.X.Y with Y 1..250 on each port: 64,000 destinations per port."""
WATCHED = 16
TIMEOUT_S = 120.0
SHM_MB = 64
LISTEN_IP = "127.47.255.254"


def dest_uri(i: int) -> str:
    x, y = (i % PER_PORT) // 250, i % 250 + 1
    return f"sip:127.47.{x}.{y}:{PORT0 + i // PER_PORT}"


def watch_first(n: int) -> list[socket.socket]:
    socks = []
    for i in range(min(n, WATCHED)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.47.0." + str(i % 250 + 1), PORT0))
        s.setblocking(False)
        socks.append(s)
    return socks


def one_run(n: int, wd: Path) -> dict[str, float | int | str]:
    """Start a Kamailio with ``n`` destinations; seconds to its first ping, and to the log's
    "pinger started" line."""
    uris = [dest_uri(i) for i in range(n)]
    socks = watch_first(n)
    kam = KaKemi(
        workdir=wd, ip=LISTEN_IP, port=5060, children=2, shm_mb=SHM_MB,
        defines=ka_defines(uris, max_destinations=n + 16, KA_PING_INTERVAL=30,
                           BENCH_CHECK="none", KA_RPC_ADD_RATE=0),
    )  # fmt: skip
    try:
        kam.start(wait=False)
        started = kam.started_at
        first = None
        deadline = time.monotonic() + TIMEOUT_S
        while first is None and time.monotonic() < deadline:
            if kam.proc is not None and kam.proc.poll() is not None:
                return {"n": n, "failed": kam.log()[-2000:]}
            ready, _, _ = select.select(socks, [], [], 0.01)
            if ready:
                first = time.time()
        log = kam.log()
        if first is None:
            return {"n": n, "failed": f"no ping in {TIMEOUT_S} s: {log[-2000:]}"}
        kam.wait_ready()
        return {"n": n, "ready_s": round(first - started, 3)}
    finally:
        kam.stop()
        for s in socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="*", type=int, default=[1, 100_000])
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    wd = workdir("startup")
    try:
        for rep in range(args.reps):
            for n in args.n:
                r = one_run(n, wd / f"n{n}-r{rep}")
                print(f"rep {rep} N={n:,}: {r.get('ready_s', r.get('failed'))}", flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
