"""Start-up: Kamailio start to the first ping seen by a peer, with N destinations in
``KA_DESTINATION`` (issue 31 item 3: 100,000 ready in ≤ 1 s, 1,000,000 in ≤ 10 s).

Each run is one Kamailio (``children=2``, ``-x fm``, ``-m 64``) whose destinations are
``127.47.X.Y:port`` (this benchmark's own range), interval 30 s.  The start-up list is
pinged in list order spread over the interval, so the first destinations are pinged first:
UDP sockets bound on the first ``WATCHED`` of them take the kernel receive time of the first
datagram.  ``ready_s`` is Kamailio start to that datagram.  A run with one destination gives
Kamailio's own fixed start-up (its cfg, app_python3, the forks), reported apart.

``--source state``: the destinations are runtime ones (owner ``rpc``) in a ``KA_STATE_FILE``
written beforehand by this checkout's own code, none in the cfg.  ``--pkg-mb``: Kamailio's
private memory (``-M``); its cfg lexer needs about 8 MB per 300,000 destinations in a define.

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
from ka_core.config.kaconfig import load_config
from ka_core.ops import state_file
from ka_core.store import registry
from kemi import persistence, runtime
from tests.unit.fake_ksr import FakeKsr

PORT0 = 24700
PER_PORT = 250 * 256
"""127.47.X.Y with Y 1..250 on each port: 64,000 destinations per port."""
WATCHED = 16
TIMEOUT_S = 120.0
SHM_MB = 64
LISTEN_IP = "127.47.255.254"
MAX_N = 1_000_000
"""``KA_MAX_DESTINATIONS`` at most."""


def dest_uri(i: int) -> str:
    x, y = (i % PER_PORT) // 250, i % 250 + 1
    return f"sip:127.47.{x}.{y}:{PORT0 + i // PER_PORT}"


def watch_first(uris: list[str]) -> list[socket.socket]:
    """Sockets on the first ``WATCHED`` of ``uris`` (``sip:ip:port``), in pinging order."""
    socks = []
    for uri in uris[:WATCHED]:
        ip, port = uri.removeprefix("sip:").split(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, int(port)))
        s.setblocking(False)
        socks.append(s)
    return socks


def write_state_file(uris: list[str], path: Path, interval_s: int | None = 30) -> list[str]:
    """A state file holding ``uris`` as runtime destinations, as a pinger writes it (kept
    if ``path`` exists: 1,000,000 take a minute); its destinations in file (slot) order,
    the order they are pinged in after a restore.  ``interval_s`` None: they follow
    ``KA_PING_INTERVAL``."""
    if not path.exists():
        _write_state_file(uris, path, interval_s)
    return [d.uri for d in state_file.decode(path.read_bytes()).destinations]


def _write_state_file(uris: list[str], path: Path, interval_s: int | None) -> None:
    config = load_config({"MAX_DESTINATIONS": str(min(len(uris) + 16, MAX_N))})
    rt = runtime.build(config, FakeKsr())
    try:
        for uri in uris:
            registry.add(rt.table, uri, "rpc", interval_s=interval_s, wall=time.time())
        persistence.StateWriter(rt.table, str(path), time.time).write_if_changed(0.0)
    finally:
        runtime.close(rt)


def one_run(
    n: int, wd: Path, source: str, pkg_mb: int, state: Path | None = None
) -> dict[str, float | int | str]:
    """Start a Kamailio with ``n`` destinations; seconds to its first ping."""
    uris = [dest_uri(i) for i in range(n)]
    wd.mkdir(parents=True, exist_ok=True)
    defines = ka_defines(uris if source == "cfg" else [], max_destinations=min(n + 16, MAX_N),
                         KA_PING_INTERVAL=30, BENCH_CHECK="none", KA_RPC_ADD_RATE=0)  # fmt: skip
    if source == "state":
        state = state or wd / "ka.state"
        uris = write_state_file(uris, state)
        defines["KA_STATE_FILE"] = f'"{state}"'
    socks = watch_first(uris)
    kam = KaKemi(workdir=wd, ip=LISTEN_IP, port=5060, children=2, shm_mb=SHM_MB,
                 defines=defines, extra_args=["-M", str(pkg_mb)])  # fmt: skip
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
    ap.add_argument("--source", choices=("cfg", "state"), default="cfg")
    ap.add_argument("--pkg-mb", type=int, default=16)
    ap.add_argument("--state-file", type=Path, help="--source state: write it once, reuse it")
    args = ap.parse_args()
    wd = workdir("startup")
    try:
        for rep in range(args.reps):
            for n in args.n:
                r = one_run(n, wd / f"n{n}-r{rep}", args.source, args.pkg_mb, args.state_file)
                shown = r.get("ready_s", r.get("failed"))
                print(f"rep {rep} N={n:,} from {args.source}: {shown}", flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
