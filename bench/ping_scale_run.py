"""The pinging-scale benchmark's runs: one Kamailio with N destinations (ka-kemi, the C
keepalive module or dispatcher probing), its CPU, shm and socket drops over a window, an RPC
add to first ping, and the analysis of what the responder received (see
``bench.ping_scale``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypedDict

import numpy as np
import numpy.typing as npt

from bench.addresses import dest_addrs, ip_u32, run_plan, sip_uri, wide_addrs
from bench.kamailio import (
    PING_INTERVAL_S,
    BenchKamailio,
    CKeepalive,
    InstanceArgs,
    KaKemi,
    dispatcher_cfg,
    ka_defines,
)
from bench.probes import udp_socket_stats
from bench.procs import wait_until
from bench.responder_proc import Responder
from ka_core.ops import binrpc
from ka_core.store.ring import capacity_for as ring_capacity_for
from ka_core.store.table import buffer_size
from tests.harness.rpc_client import BinrpcClient

BENCH_ID = 2
SHM_MB = 256
SIDES = ("ka", "c", "ds")
"""The measured sides: ka-kemi, the C keepalive module, dispatcher (``ds_probing_mode 1``)."""
LISTEN_OCTET = {"c": 1, "ka": 2, "none": 3, "ds": 4}
"""Each side listens on ``<LISTEN_NET>.BENCH_ID.<this>:5060``."""
LISTEN_NET, PEER_PORT = run_plan()
ADD_ADDRS = ["127.0.200.1", "127.0.200.3", "127.0.200.5"]  # answering, outside every N

# window start/end (s), Kamailio CPU ns at both, shm real_used samples, shm at the end,
# Kamailio's and the responder's socket stats at both, (address, keepalive.add time), pids
Measured: TypeAlias = tuple[
    float,
    float,
    int,
    int,
    list[int],
    dict[str, int],
    dict[str, int],
    dict[str, int],
    dict[str, int],
    dict[str, int],
    list[tuple[str, float | None]],
    list[int],
]


class IntervalErr(TypedDict):
    p50: float
    p99: float
    max: float
    intervals: int


class CrashFacts(TypedDict):
    after_s: float
    exit_code: int | None
    what: str
    alerts: list[str]
    shm_errors: int


class Run(TypedDict, total=False):
    """One side at one N, as written to the result file: what ``one_run`` measured (and
    ``analyse`` found in the responder's log), or why it failed or crashed."""

    side: str
    """``ka``, ``c``, ``ds`` (dispatcher), or ``none`` (the same Kamailio with none of them:
    the baseline)."""
    n: int
    rep: int
    interval_s: float
    failed: str
    crashed: CrashFacts
    ready_s: float
    alive_at_end: bool
    log_errors: list[str]
    shm_error_lines: int
    processes: int
    pings_in_window: int
    pings_per_expected: float | None
    startup_to_first_ping_s: float
    retransmissions_in_window: int
    answering_pings: int
    answering_pings_retransmitted_pct: float | None
    answering_dests_retransmitted_pct: float | None
    interval_err_ms: IntervalErr
    burst_factor_100ms: float | None
    max_per_100ms: int
    mean_per_100ms: float
    after: dict[str, Any]
    """What ``one_run``'s ``after`` measured before stopping Kamailio."""
    round_span_s: float | None
    cpu_pct: float
    cpu_pct_raw: float
    us_per_ping: float | None
    shm_steady_mb: float
    shm_peak_mb: float
    table_mb: float
    shm_kb_per_dest_steady: float
    shm_kb_per_dest_peak: float
    shm_only_kb_per_dest_steady: float
    kamailio_socket_drops: int
    kamailio_socket_drops_since_start: int
    responder_drops: int
    window_s: float
    add_to_first_ping_s: list[float | None]


def make(
    side: str, n: int, wd: Path, interval_s: float = PING_INTERVAL_S, shm_mb: int = SHM_MB,
    extra: dict[str, str | int] | None = None,
) -> BenchKamailio:  # fmt: skip
    """``side`` ``none``: the C configuration without keepalive.so (the baseline); ``ds``:
    the same plus dispatcher.so probing the destinations, one set in a list file."""
    addrs = dest_addrs(n) if n <= 25_000 else wide_addrs(n)
    dests = [sip_uri(a, PEER_PORT) for a in addrs] if n else []
    ip = f"{LISTEN_NET}.{BENCH_ID}.{LISTEN_OCTET[side]}"
    common = InstanceArgs(workdir=wd, ip=ip, port=5060, children=2, shm_mb=shm_mb)
    defines: dict[str, str | int] = {"BENCH_CHECK": "none", "KA_PING_INTERVAL": int(interval_s)}
    if side == "ka":
        max_dests = max(n, 100) + 16
        return KaKemi(
            defines=ka_defines(dests, max_destinations=max_dests, **defines, **(extra or {})),
            **common,
        )
    if side != "c":
        defines["BENCH_NO_KEEPALIVE"] = 1
    if side != "ds":
        return CKeepalive(destinations=dests, defines=defines | (extra or {}), **common)
    kam = CKeepalive(side="ds", defines=defines | (extra or {}), **common)
    kam.cfg_extra = dispatcher_cfg(kam.workdir / "dispatcher.list", dests, int(interval_s))
    return kam


def idle_baseline(side: str, wd: Path, seconds: float, rep: int = 0) -> dict[str, float]:
    """CPU (every process) and shm of ``side`` with no destination."""
    kam = make(side, 0, wd / f"idle-{side}-{rep}")
    kam.start()
    try:
        time.sleep(2)
        c0, t0 = kam.cpu_ns(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = kam.cpu_ns(), time.monotonic()
        shm = kam.shm()
    finally:
        kam.stop()
    return {
        "cpu_ns_per_s": (c1 - c0) / (t1 - t0),
        "real_used": shm["real_used"],
        "max_used": shm["max_used"],
    }


def rpc_add(kam: BenchKamailio, uri: str) -> float | None:
    """Add ``uri`` through the side's own RPC socket (``keepalive.add``; dispatcher:
    ``dispatcher.add`` to set 1); the wall time it returned, or None if it failed."""
    path = kam.rpc_socket if kam.side == "ka" else kam.ctl_socket
    params: list[binrpc.Value] = [1, uri] if kam.side == "ds" else [uri, "bench"]
    method = "dispatcher.add" if kam.side == "ds" else "keepalive.add"
    with BinrpcClient(path) as client:
        fault, _values, _ = client.call(method, *params)
    return None if fault else time.time()


def one_run(
    side: str,
    n: int,
    wd: Path,
    idle: dict[str, float],
    warmup: float,
    window: float,
    add_addrs: list[str] = ADD_ADDRS,
    interval_s: float = PING_INTERVAL_S,
    rep: int = 0,
    shm_mb: int = SHM_MB,
    extra: dict[str, str | int] | None = None,
    after: Callable[[BenchKamailio], dict[str, object]] | None = None,
) -> Run:
    """``idle``: the baseline (``none``) measured in the same repetition; its CPU is
    subtracted for ``us_per_ping`` only (``cpu_pct_raw`` is every Kamailio process)."""
    run_dir = wd / f"{side}-{n}-{rep}"
    responder = Responder(
        run_dir.with_suffix(".bin"), ["--wild", "--answer", "odd", "--port", str(PEER_PORT)]
    ).start()
    kam = make(side, n, run_dir, interval_s, shm_mb, extra)
    result: Run = {"side": side, "n": n, "rep": rep, "interval_s": interval_s}
    try:
        kam.start()
        result["ready_s"] = kam.ready_at - kam.started_at
        try:
            # dispatcher pings a destination it was given only in its next round
            settle = interval_s if side == "ds" else 0.0
            measured = measure(kam, warmup, window, add_addrs, settle)
        except (OSError, RuntimeError, ValueError) as exc:
            # a dying Kamailio removes its ctl socket before its main process exits
            proc = kam.proc
            if proc is None or not wait_until(lambda: proc.poll() is not None, 15):
                raise
            result["crashed"] = crash_facts(kam, exc)
        result["alive_at_end"] = kam.proc is not None and kam.proc.poll() is None
        if after is not None and result["alive_at_end"]:
            result["after"] = after(kam)
        result["log_errors"] = kam.log_errors()
        result["shm_error_lines"] = sum(
            1 for ln in kam.log().splitlines() if "shm" in ln and "ERROR" in ln
        )
    finally:
        kam.stop()
        responder.stop()
    if "crashed" in result:
        return result
    w0, w1, c0, c1, shm_samples, shm_end, sock0, sock1, resp0, resp1, adds, pids = measured
    result["processes"] = len(pids)
    ev = responder.events()
    ev = ev[ev["src"] == ip_u32(kam.ip)]
    result.update(analyse(ev, n, w0, w1, kam.started_at, interval_s))
    if n and not result["pings_in_window"]:  # nothing sent is no CPU figure to compare
        raise RuntimeError(
            f"{side} at N={n}: no ping reached the responder in the {window:.0f} s window "
            f"({len(ev)} requests from {kam.ip} in all; log: {result['log_errors'][:3]})"
        )
    cpu = c1 - c0 - idle["cpu_ns_per_s"] * (w1 - w0)
    pings = int(result["pings_in_window"])
    result["cpu_pct"] = cpu / (w1 - w0) / 1e9 * 100
    result["cpu_pct_raw"] = (c1 - c0) / (w1 - w0) / 1e9 * 100
    result["us_per_ping"] = cpu / 1000 / pings if pings else None
    steady = float(np.median(shm_samples)) - idle["real_used"]
    peak = shm_end["max_used"] - idle["max_used"]
    n = max(n, 1)  # per destination (N = 0: the whole instance)
    max_dests = max(n, 100) + 16
    table = buffer_size(max_dests, ring_capacity_for(max_dests)) if side == "ka" else 0
    result.update(
        {
            "shm_steady_mb": steady / 2**20,
            "shm_peak_mb": peak / 2**20,
            "table_mb": table / 2**20,
            "shm_kb_per_dest_steady": (steady + table) / 1024 / n,
            "shm_kb_per_dest_peak": (peak + table) / 1024 / n,
            "shm_only_kb_per_dest_steady": steady / 1024 / n,
            "kamailio_socket_drops": sock1.get("drops", 0) - sock0.get("drops", 0),
            "kamailio_socket_drops_since_start": sock1.get("drops", 0),
            "responder_drops": resp1.get("drops", 0) - resp0.get("drops", 0),
            "window_s": w1 - w0,
        }
    )
    add_lat: list[float | None] = []
    for addr, t_add in adds:
        if t_add is None:
            add_lat.append(None)
            continue
        hits = ev["ts"][(ev["dst"] == ip_u32(addr)) & (ev["ts"] >= int(t_add * 1e9) - 50_000_000)]
        add_lat.append(float(hits.min()) / 1e9 - t_add if len(hits) else None)
    result["add_to_first_ping_s"] = add_lat
    return result


def measure(
    kam: BenchKamailio, warmup: float, window: float, add_addrs: list[str], settle_s: float = 0.0
) -> Measured:
    """``settle_s``: extra wait after the last add, so that its first ping is logged."""
    assert kam.proc is not None
    while time.time() < kam.started_at + warmup:
        time.sleep(0.2)
        if kam.proc.poll() is not None:
            raise RuntimeError("kamailio exited during the warm-up")
    pids = kam.all_pids()
    sock0 = udp_socket_stats(kam.ip, 5060) or {}
    resp0 = udp_socket_stats("0.0.0.0", PEER_PORT) or {}
    shm_samples: list[int] = []
    w0, c0 = time.time(), kam.cpu_ns()
    next_sample = time.time()
    while time.time() < w0 + window:
        if time.time() >= next_sample:
            shm_samples.append(kam.shm()["real_used"])
            next_sample += 5
        time.sleep(0.1)
    c1, w1 = kam.cpu_ns(), time.time()
    shm_end = kam.shm()
    sock1 = udp_socket_stats(kam.ip, 5060) or {}
    resp1 = udp_socket_stats("0.0.0.0", PEER_PORT) or {}
    # keepalive.add to first ping, one destination at a time
    adds: list[tuple[str, float | None]] = []
    for addr in add_addrs:
        adds.append((addr, rpc_add(kam, sip_uri(addr, PEER_PORT))))
        time.sleep(1.0)
    time.sleep(settle_s)
    return w0, w1, c0, c1, shm_samples, shm_end, sock0, sock1, resp0, resp1, adds, pids


def ds_flags(kam: BenchKamailio) -> dict[str, object]:
    """How many of dispatcher's destinations carry each ``FLAGS`` (``AP`` active, ``IP``
    inactive, both probing): proof that its replies were processed, half and half here."""
    counts: dict[str, int] = {}

    def walk(value: binrpc.Value) -> None:
        if isinstance(value, binrpc.Struct):
            for name, member in value.members:
                if name == "FLAGS":
                    counts[str(member)] = counts.get(str(member), 0) + 1
                else:
                    walk(member)

    for value in kam.ctl_call("dispatcher.list"):
        walk(value)
    return {"ds_flags": counts}


def crash_facts(kam: BenchKamailio, exc: Exception) -> CrashFacts:
    assert kam.proc is not None
    lines = kam.log().splitlines()
    return {
        "after_s": round(time.time() - kam.started_at, 1),
        "exit_code": kam.proc.returncode,
        "what": f"{type(exc).__name__}: {exc}"[:200],
        "alerts": [ln.strip()[:200] for ln in lines if "ALERT" in ln or "CRITICAL" in ln][:5],
        "shm_errors": sum(1 for ln in lines if "shm" in ln and "ERROR" in ln),
    }


def analyse(
    ev: npt.NDArray[np.void], n: int, w0: float, w1: float, started: float,
    interval_s: float = PING_INTERVAL_S,
) -> Run:  # fmt: skip
    interval_s = interval_s
    out: Run = {}
    if len(ev) == 0:
        return {"pings_in_window": 0, "pings_per_expected": 0.0}
    out["startup_to_first_ping_s"] = float(ev["ts"].min()) / 1e9 - started
    # first transmission of each ping = first (dst, Call-ID) occurrence
    key = (ev["dst"].astype(np.uint64) << np.uint64(32)) | ev["crc"].astype(np.uint64)
    order = np.argsort(ev["ts"], kind="stable")
    ev, key = ev[order], key[order]
    _uniq, first_idx, counts = np.unique(key, return_index=True, return_counts=True)
    first = ev[first_idx]
    t = first["ts"].astype(np.float64) / 1e9
    in_win = (t >= w0) & (t < w1)
    pings = int(in_win.sum())
    expected = n * (w1 - w0) / interval_s
    out["pings_in_window"] = pings
    out["pings_per_expected"] = pings / expected if expected else None
    out["retransmissions_in_window"] = int((counts[in_win] - 1).sum())
    answering = (first["dst"] & 1) == 1
    sel = in_win & answering
    out["answering_pings"] = int(sel.sum())
    out["answering_pings_retransmitted_pct"] = (
        float((counts[sel] > 1).sum()) / sel.sum() * 100 if sel.sum() else None
    )
    dst_retx = np.unique(first["dst"][sel & (counts > 1)])
    dst_ans = np.unique(first["dst"][sel])
    out["answering_dests_retransmitted_pct"] = (
        len(dst_retx) / len(dst_ans) * 100 if len(dst_ans) else None
    )
    # interval error per destination, intervals fully after warm-up start
    o = np.lexsort((t, first["dst"]))
    td, dd = t[o], first["dst"][o]
    same = dd[1:] == dd[:-1]
    start_ok = td[:-1] >= w0 - interval_s
    end_ok = td[1:] < w1
    diffs = (td[1:] - td[:-1])[same & start_ok & end_ok]
    err_ms = np.abs(diffs - interval_s) * 1000
    if len(err_ms):
        out["interval_err_ms"] = {
            "p50": float(np.percentile(err_ms, 50)),
            "p99": float(np.percentile(err_ms, 99)),
            "max": float(err_ms.max()),
            "intervals": len(err_ms),
        }
    # burst: busiest 100 ms bin vs the mean over the window
    tw = t[in_win]
    if len(tw):
        hist = np.histogram(tw, bins=max(1, int((w1 - w0) / 0.1)), range=(w0, w1))[0]
        per_bin: list[int] = hist.tolist()
        mean = sum(per_bin) / len(per_bin)
        out["burst_factor_100ms"] = max(per_bin) / mean if mean else None
        out["max_per_100ms"], out["mean_per_100ms"] = max(per_bin), mean
        # per round: time span holding the middle 98 % of pings of the busiest 5 s round
        rounds = np.floor((tw - w0) / interval_s)
        spans = []
        for r in np.unique(rounds):
            tr = np.sort(tw[rounds == r])
            if len(tr) >= max(10, n // 2):
                spans.append(float(np.percentile(tr, 99) - np.percentile(tr, 1)))
        out["round_span_s"] = max(spans) if spans else None
    return out
