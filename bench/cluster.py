"""Cluster mode (docs/cluster.md): 3 nodes sharing N destinations at ping interval 5 s.

One responder (``bench/responder.py --wild``, all answering) plays every gateway and logs each
OPTIONS with its source.  Reported: OPTIONS per interval at the peers (target N, not 3 N)
and how many destinations got pings from more than one node, CPU % per node against one
node alone with the same destinations, convergence of a state change (all nodes DOWN minus
the first node DOWN, over a sample, p50/p99) and failover after ``kill -9`` of the busiest
node (time until the others count it out, longest silence at its destinations minus the
interval).  Destinations are ``KA_DESTINATION`` on every node, as one cfg for all would.

    .venv/bin/python -m bench.cluster --quick            # 300 destinations, short windows
    .venv/bin/python -m bench.cluster --sizes 10000      # the issue's scale (heavy)
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import statistics
import time
from pathlib import Path
from typing import cast

from bench.addresses import dest_addrs, ip_u32
from bench.cli import bench_args, header
from bench.kamailio import PING_INTERVAL_S, BenchKamailio, ka_defines
from bench.procs import stop_all, wait_until, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from ka_core.ops import binrpc
from tests.harness.rpc_client import BinrpcClient

PORT = 15321
"""Not the other benchmarks' 15300: a run of both cannot mix their peers' logs."""
SAMPLE = 50
HEARTBEAT_MS = 1000
PAGE = 500
"""keepalive.list pages (kamcmd's replies stop near 700 destinations)."""


def uri(addr: str) -> str:
    return f"sip:{addr}:{PORT}"


def start_nodes(wd: Path, addrs: list[str], n_nodes: int) -> list[BenchKamailio]:
    defines = ka_defines([uri(a) for a in addrs], max_destinations=len(addrs) + 10)
    defines["KA_RPC_ADD_RATE"] = 0
    nodes = [
        BenchKamailio(workdir=wd / f"node{i}", defines=dict(defines), children=2, shm_mb=256)
        for i in range(n_nodes)
    ]
    if n_nodes > 1:
        for kam in nodes:
            kam.defines.update(
                KA_CLUSTER=1,
                KA_DMQ_SERVER=f'"sip:{kam.ip}:{kam.port}"',
                KA_DMQ_NOTIFY=f'"sip:{nodes[0].ip}:{nodes[0].port}"',
                KA_CLUSTER_HEARTBEAT_MS=HEARTBEAT_MS,
            )
    for kam in nodes:
        kam.start(wait=False)
    for kam in nodes:
        kam.wait_ready()
    return nodes


def rpc(kam: BenchKamailio, method: str, *params: str | int) -> list[object]:
    with BinrpcClient(kam.rpc_socket) as client:
        fault, values, _ = client.call(method, *params)
    if fault:
        raise RuntimeError(f"{method}: {values}")
    return list(values)


def field(kam: BenchKamailio, method: str, name: str, *params: str) -> str:
    text = repr(rpc(kam, method, *params))
    m = re.search(rf"'{name}', '?([^,')]*)", text)
    return m.group(1) if m else ""


def live(kam: BenchKamailio) -> int:
    return len(field(kam, "keepalive.cluster", "live nodes").split())


def window_stats(
    responder: Responder, addrs: list[str], start_ns: int, end_ns: int
) -> dict[str, float]:
    ev = responder.events()
    ev = ev[(ev["ts"] >= start_ns) & (ev["ts"] < end_ns)]
    intervals = (end_ns - start_ns) / 1e9 / PING_INTERVAL_S
    per_dst: dict[int, set[int]] = {}
    for dst, src in zip(ev["dst"].tolist(), ev["src"].tolist(), strict=True):
        per_dst.setdefault(dst, set()).add(src)
    wanted = {ip_u32(a) for a in addrs}
    return {
        "options_per_interval": round(len(ev) / intervals, 1),
        "destinations": len(addrs),
        "several_senders": sum(1 for d, s in per_dst.items() if d in wanted and len(s) > 1),
        "unprobed": len(wanted - set(per_dst)),
    }


def cpu_percent(nodes: list[BenchKamailio], seconds: float) -> list[float]:
    before = [k.cpu_ns() for k in nodes]
    time.sleep(seconds)
    return [
        round((k.cpu_ns() - b) / 1e9 / seconds * 100, 1) for k, b in zip(nodes, before, strict=True)
    ]


def states(kam: BenchKamailio) -> dict[str, int]:
    """uri -> state of every destination (one ``keepalive.list``)."""
    out: dict[str, int] = {}
    offset = 0
    while True:
        page = rpc(kam, "keepalive.list", offset, PAGE)
        for item in page:
            members = dict(cast(binrpc.Struct, item).members)
            out[str(members["uri"])] = int(cast(int, members["state"]))
        if len(page) < PAGE:
            return out
        offset += PAGE


def convergence(
    nodes: list[BenchKamailio], responder: Responder, sample: list[str]
) -> tuple[list[float], float]:
    """(all nodes DOWN - first node DOWN per destination, mean sweep time = resolution)."""
    responder.command("set 503 " + ",".join(sample))
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    sweeps, t0 = 0, time.monotonic()
    deadline = t0 + 3 * PING_INTERVAL_S + 5
    while len(done) < len(sample) and time.monotonic() < deadline:
        views = [states(k) for k in nodes]
        now = time.monotonic()
        sweeps += 1
        for addr in sample:
            down = [v.get(uri(addr)) == 2 for v in views]
            if any(down):
                first.setdefault(addr, now)
            if all(down):
                done.setdefault(addr, now)
    responder.command("set 200 " + ",".join(sample))
    return sorted(done[a] - first[a] for a in done), (time.monotonic() - t0) / max(sweeps, 1)


def failover(
    nodes: list[BenchKamailio], responder: Responder, addrs: list[str]
) -> dict[str, float]:
    counts: dict[str, list[str]] = {}
    for addr in addrs[:200]:
        counts.setdefault(field(nodes[0], "keepalive.cluster", "probed by", uri(addr)), []).append(
            addr
        )
    victim = max(nodes[1:], key=lambda k: len(counts.get(f"{k.ip}:{k.port}", [])))
    theirs = counts.get(f"{victim.ip}:{victim.port}", [])
    survivors = [k for k in nodes if k is not victim]
    killed_ns = time.time_ns()
    killed = time.monotonic()
    for pid in victim.all_pids():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(live(k) == 2 for k in survivors), 30, step=0.05)
    out_s = time.monotonic() - killed
    victim_ip = ip_u32(victim.ip)
    time.sleep(2 * PING_INTERVAL_S)
    ev = responder.events()
    gaps, takeover = [], []
    for addr in theirs:
        ts = sorted(
            ev["ts"][(ev["dst"] == ip_u32(addr)) & (ev["ts"] >= killed_ns - 10**10)].tolist()
        )
        if len(ts) > 1:
            gaps.append(max(b - a for a, b in itertools.pairwise(ts)) / 1e9)
        mask = (ev["dst"] == ip_u32(addr)) & (ev["ts"] >= killed_ns) & (ev["src"] != victim_ip)
        if mask.any():
            takeover.append((int(ev["ts"][mask].min()) - killed_ns) / 1e9)
    assert victim.proc is not None
    victim.proc.wait(timeout=10)
    return {
        "counted_out_s": round(out_s, 2),
        "destinations_moved": len(theirs),
        "first_survivor_ping_after_kill_max_s": round(max(takeover), 2) if takeover else -1.0,
        "longest_silence_s": round(max(gaps), 2) if gaps else -1.0,
        "silence_beyond_interval_s": round(max(gaps) - PING_INTERVAL_S, 2) if gaps else -1.0,
    }


def one_size(n: int, wd: Path, warmup: float, window: float) -> dict[str, object]:
    addrs = dest_addrs(n)
    responder = Responder(
        wd / f"resp{n}.bin", ["--wild", "--port", str(PORT), "--answer", "all", "--control"]
    ).start()
    result: dict[str, object] = {"n": n}
    try:
        single = start_nodes(wd / f"single{n}", addrs, 1)
        time.sleep(warmup)
        result["single_cpu_percent"] = cpu_percent(single, window)[0]
        single[0].stop()
        nodes = start_nodes(wd / f"cluster{n}", addrs, 3)
        wait_until(lambda: all(live(k) == 3 for k in nodes), 60, step=0.2)
        time.sleep(warmup)
        start_ns = time.time_ns()
        result["cluster_cpu_percent"] = cpu_percent(nodes, window)
        result["peers"] = window_stats(responder, addrs, start_ns, time.time_ns())
        lags, sweep = convergence(nodes, responder, addrs[: min(SAMPLE, n)])
        result["convergence_s"] = {
            "count": len(lags),
            "resolution": round(sweep, 3),
            "p50": round(statistics.median(lags), 3) if lags else None,
            "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3) if lags else None,
        }
        result["failover"] = failover(nodes, responder, addrs)
        for kam in nodes:
            kam.stop()
    finally:
        responder.stop()
    return result


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], sizes=True)
    header("cluster mode", args.quick)
    sizes = args.sizes or ([300] if args.quick else [1000, 10000])
    warmup, window = (6.0, 10.0) if args.quick else (15.0, 20.0)
    wd = workdir("cluster")
    results = []
    try:
        for n in sizes:
            print(f"  N={n} ...", flush=True)
            r = one_size(n, wd, warmup, window)
            print("   ", r, flush=True)
            results.append(r)
    finally:
        stop_all()
    if not args.no_json:
        path = write_result("cluster", {
            "benchmark": "cluster", "mode": "quick" if args.quick else "full",
            "machine": machine_facts(), "params": {
                "ping_interval_s": PING_INTERVAL_S, "heartbeat_ms": HEARTBEAT_MS,
                "warmup_s": warmup, "window_s": window, "sample": SAMPLE},
            "runs": results,
        })  # fmt: skip
        print(f"written {path}")


if __name__ == "__main__":
    main()
