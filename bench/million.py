"""One million destinations on this machine (issue 31 item 4): ka-kemi pinging N
destinations (default 1,000,000) at a 60 s interval, half of them answering.

One Kamailio (``children=2``, ``-x fm``, ``-m 256``) loads the destinations from a state file
(``KA_STATE_FILE``, runtime destinations following ``KA_PING_INTERVAL``; a define of 1,000,000
URIs does not get through Kamailio's cfg parser, see ``bench.startup``), written once by this
checkout's own code and kept in the temp directory.  The peers: ``bench/responder.py`` on
``KA_BENCH_PEER_PORT`` (``--responders K``: K of them on that port and the next K-1, the
destinations dealt out over the ports; one keeps up with 1,000,000 at 60 s, its drops and CPU
are in the result), destinations ``127.100.0.1`` to ``127.115.255.254``.  After start-up
and one interval for the first round:

1. one whole interval: CPU of every Kamailio process, shm, interval error;
2. ``keepalive.list`` pages (the first and one in the middle) and ``keepalive.get`` through
   the BINRPC socket, a new connection each as ``kamcmd`` does;
3. a state file save, made by pausing one destination (resumed right after);
4. 10 % of the destinations (answering ones) stop answering at once, for one interval, then
   answer again for another: their state changes in Kamailio's log.

Throughout, the responders' logs give the distinct destinations pinged per interval and the
longest pause in sending (the largest gap between two consecutive datagrams) in each phase.

``python -m bench.million [--n 1000000] [--interval 60] [--responders 1] [--quick]``
(``--quick``: 20,000 at 10 s).  Uses ``KA_BENCH_NET`` / ``KA_BENCH_PEER_PORT``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench import million_analysis as ma
from bench.addresses import run_plan, sip_uri
from bench.cli import header
from bench.kamailio import BenchKamailio, KaKemi, ka_defines
from bench.ping_scale_run import analyse, idle_baseline
from bench.probes import cpu_ns, udp_socket_stats
from bench.procs import stop_all, wait_until, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.startup import MAX_N as KA_MAX_N
from bench.startup import write_state_file
from bench.stats import md_table
from ka_core.probe.scheduler import batch_tick
from ka_core.store.ring import capacity_for as ring_capacity_for
from ka_core.store.table import buffer_size
from tests.harness.rpc_client import BinrpcClient

SHM_MB = 256
FLAP_FRACTION = 0.1
RPC_CALLS = 20
PAGE = 100
STARTUP_TIMEOUT_S = 300.0
SETTLE_S = 5.0
"""After an interval, before the next phase: the last pings' timeouts (2 s) and a save."""
QUIET_CAP_S = 60.0
SAVE_WAIT_S = 180.0
PHASE_GAP_S = 1.0
"""Between two phases: a pause is counted in the phase it began in."""


class StateWatch(threading.Thread):
    """When each new version of the state file appeared (polled every 10 ms)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.writes: list[float] = []
        self.halt = threading.Event()

    def version(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def run(self) -> None:
        seen = self.version()
        while not self.halt.wait(0.01):
            now = self.version()
            if now != seen:
                self.writes.append(time.time())
                seen = now

    def wait_quiet(self, cap_s: float) -> float:
        """Wait until no save is under way (none for 1.5x the longest time between two
        saves seen, at least 3 s; at most ``cap_s``): the first round's state changes are
        written back to back, each write taking longer the larger the table.  The wait (s)."""
        t0 = time.time()

        def quiet() -> bool:
            w = list(self.writes)
            spacing = max((b - a for a, b in itertools.pairwise(w)), default=0.0)
            return time.time() - (w[-1] if w else 0.0) > max(3.0, 1.5 * spacing)

        wait_until(quiet, cap_s, 0.1)
        return time.time() - t0

    def wait_new(self, after: float, timeout: float) -> float | None:
        found = wait_until(lambda: any(t > after for t in self.writes), timeout, 0.01)
        return min(t for t in self.writes if t > after) if found else None


def prepared_state(uris: list[str], wd: Path) -> Path:
    """The state file for these destinations (kept in the temp directory: 1,000,000 take
    a minute to write), copied into ``wd``, which Kamailio then rewrites."""
    cache = Path(tempfile.gettempdir()) / "ka-bench-million"
    cache.mkdir(exist_ok=True)
    kept = cache / f"n{len(uris)}-{zlib.crc32(chr(10).join(uris).encode()):08x}.state"
    write_state_file(uris, kept, interval_s=None)
    shutil.copyfile(kept, wd / "ka.state")
    return wd / "ka.state"


def drops(sockets: Iterable[tuple[str, int]]) -> int:
    """Receive drops of these UDP sockets, summed."""
    return sum((udp_socket_stats(ip, port) or {}).get("drops", 0) for ip, port in sockets)


def rpc_ms(kam: BenchKamailio, method: str, *params: str | int) -> float:
    """One call on a new connection, as ``kamcmd`` makes it: wall ms."""
    t0 = time.perf_counter()
    with BinrpcClient(kam.rpc_socket, timeout=60.0) as client:  # a first list scans all
        fault, values, _ = client.call(method, *params)
    ms = (time.perf_counter() - t0) * 1000
    if fault:
        raise RuntimeError(f"{method} {params}: {values}")
    return ms


def wait_started(kam: BenchKamailio) -> float:
    """Start ``kam`` and wait (up to ``STARTUP_TIMEOUT_S``) for its pinger; the time seen."""
    kam.start(wait=False)
    assert kam.proc is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if kam.proc.poll() is not None:
            raise RuntimeError(f"kamailio exited at start:\n{kam.log()[-3000:]}")
        if "pinger started" in kam.log():
            seen = time.time()
            if wait_until(lambda: "tcp main process" in kam.ctl("core.psx"), 60):
                return seen
        time.sleep(0.05)
    raise RuntimeError(f"no pinger after {STARTUP_TIMEOUT_S} s:\n{kam.log()[-3000:]}")


def progress(what: str, since: float) -> None:
    print(f"  +{time.time() - since:.0f} s: {what}", flush=True)


def sleep_until(t: float, kam: BenchKamailio) -> None:
    assert kam.proc is not None
    while time.time() < t:
        if kam.proc.poll() is not None:
            raise RuntimeError(f"kamailio exited:\n{kam.log()[-3000:]}")
        time.sleep(min(0.2, max(t - time.time(), 0.0)))


def one_run(n: int, interval: int, responders: int, wd: Path, r: dict[str, object]) -> None:
    """Fill ``r`` as the phases go: a run that fails keeps what it measured."""
    t_begin = time.time()
    net, port = run_plan()
    addrs = ma.dest_addrs(n)
    ports = [port + k for k in range(responders)]
    uris = [sip_uri(a, ports[i % responders]) for i, a in enumerate(addrs)]
    state = prepared_state(uris, wd)
    idle = idle_baseline("none", wd, 5.0)
    peers = [
        Responder(wd / f"peer{p}.bin", ["--wild", "--answer", "odd", "--port", str(p),
                                        "--control"]).start()
        for p in ports
    ]  # fmt: skip
    max_dests = min(n + 16, KA_MAX_N)
    defines = ka_defines(
        [], max_destinations=max_dests, KA_PING_INTERVAL=interval, BENCH_CHECK="none",
        KA_RPC_ADD_RATE=0, KA_STATE_FILE=f'"{state}"',
    )  # fmt: skip
    kam = KaKemi(workdir=wd / "kam", ip=f"{net}.31.4", port=5060, children=2, shm_mb=SHM_MB,
                 defines=defines)  # fmt: skip
    watch = StateWatch(state)
    r.update({"responders": responders, "grid_ms": batch_tick(n, interval) * 1000})
    phases: dict[str, list[tuple[float, float]]] = {}
    try:
        progress("Kamailio starting", t_begin)
        ready = wait_started(kam)
        progress("pinger started", t_begin)
        r["ready_s"] = ready - kam.started_at
        r["restore_line"] = next((ln for ln in kam.log().splitlines() if "added back" in ln), "")
        watch.start()
        sleep_until(ready + interval + SETTLE_S, kam)
        r["quiet_wait_s"] = watch.wait_quiet(QUIET_CAP_S)
        r["saves_in_first_round"] = len(watch.writes)
        phases["first_round"] = [(ready, time.time())]
        progress(f"first round over ({len(watch.writes)} saves); steady interval", t_begin)
        pids = kam.all_pids()
        peer_pids = [p.proc.pid for p in peers if p.proc is not None]
        kam_drops0, peer_drops0 = drops([(kam.ip, 5060)]), drops(("0.0.0.0", p) for p in ports)
        w0, c0, pc0 = time.time(), cpu_ns(pids), [cpu_ns([p]) for p in peer_pids]
        shm_samples = []
        while time.time() < w0 + interval:
            shm_samples.append(kam.shm()["real_used"])
            sleep_until(min(time.time() + 5, w0 + interval), kam)
        w1, c1, pc1 = time.time(), cpu_ns(pids), [cpu_ns([p]) for p in peer_pids]
        phases["steady"] = [(w0, w1)]
        r["saves_in_steady_interval"] = sum(1 for t in watch.writes if w0 <= t < w1)
        time.sleep(PHASE_GAP_S)
        progress("keepalive.list / keepalive.get", t_begin)
        t = time.time()
        picks = [uris[(k * 7919) % n] for k in range(RPC_CALLS)]
        rpc_each = {
            "list 0 100": [rpc_ms(kam, "keepalive.list", 0, PAGE) for _ in range(RPC_CALLS)],
            f"list {n // 2} 100": [
                rpc_ms(kam, "keepalive.list", n // 2, PAGE) for _ in range(RPC_CALLS)
            ],
            "get <uri> rpc": [rpc_ms(kam, "keepalive.get", u, "rpc") for u in picks],
        }
        phases["rpc"] = [(t, time.time())]
        time.sleep(PHASE_GAP_S)
        progress("state file save", t_begin)
        t = time.time()
        rpc_ms(kam, "keepalive.pause", uris[0], "rpc")  # a change: the writer saves the table
        # the writer waits 4x its last write (ka_core.ops.state_file.next_round_s): ~70 s here
        done = watch.wait_new(t, SAVE_WAIT_S)
        if done is None:
            raise RuntimeError(f"no state file save within {SAVE_WAIT_S:.0f} s of keepalive.pause")
        phases["save"] = [(t, done + 0.05)]
        save_s = [done - t]
        rpc_ms(kam, "keepalive.resume", uris[0], "rpc")  # saved again during the flap
        r["save_trigger_to_file_s"] = save_s
        time.sleep(PHASE_GAP_S)
        flapped = ma.flap_addrs(addrs, FLAP_FRACTION)
        silent = set(flapped)
        flapped_uris = {uris[i] for i, a in enumerate(addrs) if a in silent}
        progress(f"flap: {len(flapped):,} silent for one interval", t_begin)
        t = time.time()
        for peer in peers:
            peer.command("set drop " + ",".join(flapped))
        sleep_until(t + interval + SETTLE_S, kam)
        progress("flap: answering again for one interval", t_begin)
        t_back = time.time()
        for peer in peers:
            peer.command("set 200 " + ",".join(flapped))
        sleep_until(t_back + interval + SETTLE_S, kam)
        end = time.time()
        phases["flap"] = [(t, end)]
        kam_drops1, peer_drops1 = drops([(kam.ip, 5060)]), drops(("0.0.0.0", p) for p in ports)
        log = kam.log()
        r["alive_at_end"] = kam.proc is not None and kam.proc.poll() is None
        r["log_errors"] = kam.log_errors()
    finally:
        watch.halt.set()
        kam.stop()
        for peer in peers:
            peer.stop()
    progress("stopped; analysing", t_begin)
    r["flap"] = {"destinations": len(flapped), "state_changes": ma.state_changes(log, flapped_uris)}
    r["cpu_pct"] = (c1 - c0) / (w1 - w0) / 1e7
    r["responder_cpu_pct"] = [(b - a) / (w1 - w0) / 1e7 for a, b in zip(pc0, pc1, strict=True)]
    r["kamailio_socket_drops"] = kam_drops1 - kam_drops0
    r["responder_drops"] = peer_drops1 - peer_drops0
    table = buffer_size(max_dests, ring_capacity_for(max_dests))
    steady = float(np.median(shm_samples)) - idle["real_used"]
    r.update({"shm_steady_mb": steady / 2**20, "table_mb": table / 2**20,
              "shm_kb_per_dest": (steady + table) / 1024 / n})  # fmt: skip
    r["rpc_ms_each"] = rpc_each
    r["first_list_ms"] = rpc_each["list 0 100"][0]
    r["rpc_ms"] = {k: ma.latency(v) for k, v in rpc_each.items()}
    logged = [p.events() for p in peers]
    r["received_by_responder"] = [len(e) for e in logged]
    ev = np.concatenate(logged)
    ev = ev[np.argsort(ev["ts"], kind="stable")]
    steady_run = analyse(ev, n, w0, w1, kam.started_at, interval)
    r["startup_to_first_ping_s"] = steady_run.get("startup_to_first_ping_s")
    for key in ("pings_per_expected", "burst_factor_100ms", "round_span_s"):
        r[key] = steady_run.get(key)
    # pairs of pings from the steady interval on; the first round's late pings apart
    r["interval_err_ms_from_first_round"] = steady_run.get("interval_err_ms")
    r["interval_err_ms"] = analyse(ev, n, w0 + interval, end, kam.started_at, interval).get(
        "interval_err_ms"
    )
    t_first, dst = ma.first_sends(ev)
    per_interval = ma.pinged_per_interval(t_first, dst, w0, interval, end)
    r["pinged_per_interval"] = per_interval
    r["missing_per_interval"] = [n - c for c in per_interval]
    never, late = ma.late_destinations(t_first, dst, n, w0, end, interval)
    r["late_destinations"] = never + len(late)
    r["late_examples"] = [socket.inet_ntoa(int(d).to_bytes(4, "big")) for d in late[:10]]
    r["phases"] = phases
    r["gaps_ms"] = {
        name: max((g for lo, hi in spans if (g := ma.max_gap_ms(ev["ts"], lo, hi)) is not None),
                  default=None)
        for name, spans in phases.items()
    }  # fmt: skip


def tables(r: dict[str, object]) -> dict[str, str]:
    figures = md_table(["measured", "value"], ma.figure_rows(r))
    calls = md_table(["call", "median ms", "max ms", "calls"], ma.rpc_rows(r))
    targets = md_table(["target (issue 31 item 4)", "measured", "verdict"], ma.targets(r))
    return {"figures": figures, "rpc": calls, "targets": targets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="destinations (default 1,000,000)")
    ap.add_argument("--interval", type=int, default=0, help="ping interval s (default 60)")
    ap.add_argument(
        "--responders", type=int, default=1,
        help="responder processes, on KA_BENCH_PEER_PORT and the next ports (default 1)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="20,000 destinations at 10 s")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.n
    interval = args.interval or (10 if args.quick else 60)
    if not 100 <= n <= min(ma.MAX_N, KA_MAX_N) or not 1 <= args.responders <= 8:
        ap.error(f"--n 100..{min(ma.MAX_N, KA_MAX_N):,} and --responders 1..8")
    header(f"million: {n:,} destinations at {interval} s", args.quick)
    facts = machine_facts()
    t_start = time.monotonic()
    r: dict[str, object] = {"n": n, "interval_s": interval}
    try:
        one_run(n, interval, args.responders, workdir("million"), r)
    except Exception as exc:
        r["failed"] = f"{type(exc).__name__}: {exc}"[:3000]
        print(f"FAILED: {r['failed']}")
    finally:
        stop_all()
    r["wall_s"] = time.monotonic() - t_start
    t = tables(r)
    print("\n".join(t.values()))
    print(f"\n({r['wall_s']:.0f} s)")
    if not args.no_json:
        result = {"benchmark": "million", "mode": "quick" if args.quick else "full",
                  "machine": facts, "run": r, "tables": t}  # fmt: skip
        print(f"wrote {write_result('million', result)}")


if __name__ == "__main__":
    main()
