"""Pinging scale: N destinations at ping_interval 5 s, half answering, half blackholed.

For each side (C keepalive, ka-kemi) and N (100, 1,000, 5,000, 10,000, 20,000; C at 20,000 is
attempted in ``-m 256`` to show whether it fits), one Kamailio (``children=2``, ``-x fm``,
``-m 256``, tm ``fr_timer`` 2000) pings ``127.0.X.Y:15300``; the responder (one socket,
``IP_PKTINFO``) answers odd Y from the address pinged and logs kernel receive times.

Reported per run: CPU % of all Kamailio processes and µs CPU per ping (idle subtracted), shm
per destination (steady: median ``real_used`` over the window; peak: ``max_used``; ka-kemi's
shared table, which lives outside ``-m``, is added), p50/p99/max error of each destination's
ping interval, burst factor (busiest 100 ms vs the mean), pings sent / expected, kernel
receive drops of Kamailio's socket, the share of pings (and of destinations) to answering
peers that needed a retransmission, startup to first ping, ``keepalive.add`` to first ping.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeAlias, TypedDict, cast

import numpy as np
import numpy.typing as npt

from bench.addresses import dest_addrs, ip_u32, sip_uri
from bench.cli import bench_args, header
from bench.kamailio import (
    PING_INTERVAL_S,
    BenchKamailio,
    CKeepalive,
    InstanceArgs,
    KaKemi,
    ka_defines,
)
from bench.probes import udp_socket_stats
from bench.procs import stop_all, wait_until, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.rpc_client import BinrpcClient
from bench.stats import fmt, md_table, ratio, verdict
from ka_core.ring import capacity_for as ring_capacity_for
from ka_core.table import buffer_size

BENCH_ID = 2
SHM_MB = 256
C_CPU_PER_PING_NOTES = {100: 68, 1000: 77, 5000: 140, 10000: 202}
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
    n: int
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


def make(side: str, n: int, wd: Path) -> BenchKamailio:
    dests = [sip_uri(a) for a in dest_addrs(n)] if n else []
    ip = f"127.99.{BENCH_ID}.{1 if side == 'c' else 2}"
    common = InstanceArgs(workdir=wd, ip=ip, port=5060, children=2, shm_mb=SHM_MB)
    if side == "c":
        return CKeepalive(destinations=dests, defines={"BENCH_CHECK": "none"}, **common)
    return KaKemi(
        defines=ka_defines(dests, max_destinations=max(n, 100) + 16, BENCH_CHECK="none"), **common
    )


def idle_baseline(side: str, wd: Path, seconds: float) -> dict[str, float]:
    kam = make(side, 0, wd / f"idle-{side}")
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
    """``keepalive.add`` through the side's own RPC socket; the wall time it returned, or
    None if it failed."""
    path = kam.ctl_socket if kam.side == "c" else kam.rpc_socket
    with BinrpcClient(path) as client:
        fault, _values, _ = client.call("keepalive.add", uri, "bench")
    return None if fault else time.time()


def one_run(
    side: str,
    n: int,
    wd: Path,
    idle: dict[str, float],
    warmup: float,
    window: float,
    add_addrs: list[str] = ADD_ADDRS,
) -> Run:
    run_dir = wd / f"{side}-{n}"
    responder = Responder(run_dir.with_suffix(".bin"), ["--wild", "--answer", "odd"]).start()
    kam = make(side, n, run_dir)
    result: Run = {"side": side, "n": n}
    try:
        kam.start()
        result["ready_s"] = kam.ready_at - kam.started_at
        try:
            measured = measure(kam, warmup, window, add_addrs)
        except (OSError, RuntimeError, ValueError) as exc:
            # a dying Kamailio removes its ctl socket before its main process exits
            proc = kam.proc
            if proc is None or not wait_until(lambda: proc.poll() is not None, 15):
                raise
            result["crashed"] = crash_facts(kam, exc)
        result["alive_at_end"] = kam.proc is not None and kam.proc.poll() is None
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
    result.update(analyse(ev, n, w0, w1, kam.started_at))
    cpu = c1 - c0 - idle["cpu_ns_per_s"] * (w1 - w0)
    pings = int(result["pings_in_window"])
    result["cpu_pct"] = cpu / (w1 - w0) / 1e9 * 100
    result["cpu_pct_raw"] = (c1 - c0) / (w1 - w0) / 1e9 * 100
    result["us_per_ping"] = cpu / 1000 / pings if pings else None
    steady = float(np.median(shm_samples)) - idle["real_used"]
    peak = shm_end["max_used"] - idle["max_used"]
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


def measure(kam: BenchKamailio, warmup: float, window: float, add_addrs: list[str]) -> Measured:
    assert kam.proc is not None
    while time.time() < kam.started_at + warmup:
        time.sleep(0.2)
        if kam.proc.poll() is not None:
            raise RuntimeError("kamailio exited during the warm-up")
    pids = kam.all_pids()
    sock0 = udp_socket_stats(kam.ip, 5060) or {}
    resp0 = udp_socket_stats("0.0.0.0", 15300) or {}
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
    resp1 = udp_socket_stats("0.0.0.0", 15300) or {}
    # keepalive.add to first ping, one destination at a time
    adds: list[tuple[str, float | None]] = []
    for addr in add_addrs:
        adds.append((addr, rpc_add(kam, sip_uri(addr))))
        time.sleep(1.0)
    return w0, w1, c0, c1, shm_samples, shm_end, sock0, sock1, resp0, resp1, adds, pids


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


def analyse(ev: npt.NDArray[np.void], n: int, w0: float, w1: float, started: float) -> Run:
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
    expected = n * (w1 - w0) / PING_INTERVAL_S
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
    start_ok = td[:-1] >= w0 - PING_INTERVAL_S
    end_ok = td[1:] < w1
    diffs = (td[1:] - td[:-1])[same & start_ok & end_ok]
    err_ms = np.abs(diffs - PING_INTERVAL_S) * 1000
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
        bins = np.histogram(tw, bins=max(1, int((w1 - w0) / 0.1)), range=(w0, w1))[0]
        out["burst_factor_100ms"] = float(bins.max() / bins.mean()) if bins.mean() else None
        # per round: time span holding the middle 98 % of pings of the busiest 5 s round
        rounds = np.floor((tw - w0) / PING_INTERVAL_S)
        spans = []
        for r in np.unique(rounds):
            tr = np.sort(tw[rounds == r])
            if len(tr) >= max(10, n // 2):
                spans.append(float(np.percentile(tr, 99) - np.percentile(tr, 1)))
        out["round_span_s"] = max(spans) if spans else None
    return out


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    quick = args.quick
    header("pinging scale", quick)
    ns = [100, 1000] if quick else [100, 1000, 5000, 10000, 20000]
    warmup, window, idle_s = (6.0, 5.0, 3.0) if quick else (12.0, 20.0, 8.0)
    facts = machine_facts()
    wd = workdir("scale")
    t_start = time.monotonic()
    runs: list[Run] = []
    try:
        idle = {side: idle_baseline(side, wd, idle_s) for side in ("c", "ka")}
        for n in ns:
            for side in ("ka", "c"):
                print(f"  N={n} {side} ...", flush=True)
                try:
                    r = one_run(
                        side,
                        n,
                        wd,
                        idle[side],
                        warmup,
                        window,
                        ADD_ADDRS[:1] if quick else ADD_ADDRS,
                    )
                except Exception as exc:  # a side that cannot run at this N is a result
                    r = {"side": side, "n": n, "failed": f"{type(exc).__name__}: {exc}"[:2000]}
                runs.append(r)
                print("   ", summary_line(r), flush=True)
    finally:
        stop_all()
    tables = make_tables(runs, ns)
    print("\n" + tables["ratios"] + "\n\n" + tables["sides"] + "\n\n" + tables["targets"])
    print(f"\n({time.monotonic() - t_start:.0f} s; warm-up {warmup} s, window {window} s)")
    result = {
        "benchmark": "ping_scale",
        "mode": "quick" if quick else "full",
        "machine": facts,
        "params": {
            "children": 2,
            "shm_mb": SHM_MB,
            "allocator": "fm",
            "fr_timer_ms": 2000,
            "ping_interval_s": PING_INTERVAL_S,
            "warmup_s": warmup,
            "window_s": window,
            "ns": ns,
            "answering": "odd last octet (half)",
        },
        "idle": idle,
        "runs": runs,
        "tables": tables,
    }
    if not args.no_json:
        print("wrote", write_result("ping_scale", result))


def summary_line(r: Run) -> str:
    if "failed" in r:
        return f"failed: {str(r['failed'])[:300]}"
    ie: IntervalErr | dict[str, float] = r.get("interval_err_ms") or {}
    return (
        f"cpu {fmt(r.get('cpu_pct'))}% {fmt(r.get('us_per_ping'))} us/ping, "
        f"p99 err {fmt(ie.get('p99'))} ms, pings/exp {fmt(r.get('pings_per_expected'))}, "
        f"retx {fmt(r.get('answering_pings_retransmitted_pct'))}%, "
        f"drops {r.get('kamailio_socket_drops')}, "
        f"shm {fmt(r.get('shm_kb_per_dest_steady'))} KB/dest, "
        f"first ping {fmt(r.get('startup_to_first_ping_s'))} s, "
        f"errors {len(r.get('log_errors') or [])}"
    )


def _get(runs: list[Run], side: str, n: int) -> Run | None:
    for r in runs:
        if r["side"] == side and r["n"] == n:
            return r
    return None


def _ok(r: Run | None) -> bool:
    return r is not None and "failed" not in r and "crashed" not in r and not _memory_errors(r)


def _memory_errors(r: Run) -> int:
    return int(r.get("shm_error_lines") or 0)


def _why_not(r: Run | None) -> str:
    if r is None:
        return "not run"
    if "failed" in r:
        return f"failed: {str(r['failed'])[:150]}"
    if "crashed" in r:
        cr = r["crashed"]
        alert = (cr.get("alerts") or [""])[0]
        return (
            f"does not fit: {cr['shm_errors']} shm allocation errors, then Kamailio "
            f"stopped after {cr['after_s']} s (`{alert[-70:]}`)"
        )
    if _memory_errors(r):
        return f"does not fit: {_memory_errors(r)} shm allocation errors"
    return ""


def make_tables(runs: list[Run], ns: list[int]) -> dict[str, str]:
    ratio_rows = []
    for n in ns:
        k, c = _get(runs, "ka", n), _get(runs, "c", n)
        kv = k if _ok(k) else None
        cv = c if _ok(c) else None

        def r_(
            field: str, sub: str | None = None, kv: Run | None = kv, cv: Run | None = cv
        ) -> float | None:
            if kv is None or cv is None:
                return None
            # a numeric field, or a numeric member of a dict field, chosen by name
            a, b = kv.get(field), cv.get(field)
            if sub:
                a = cast("dict[str, float]", a or {}).get(sub)
                b = cast("dict[str, float]", b or {}).get(sub)
            return ratio(cast("float | None", a), cast("float | None", b))

        ratio_rows.append(
            [
                f"{n:,}",
                fmt(r_("us_per_ping")),
                fmt(r_("cpu_pct")),
                fmt(r_("interval_err_ms", "p99")),
                fmt(r_("shm_kb_per_dest_steady")),
                fmt(r_("shm_kb_per_dest_peak")),
                fmt(r_("startup_to_first_ping_s")),
                ("C " + _why_not(c)) if cv is None else "",
            ]
        )
    ratios = md_table(
        [
            "N",
            "µs CPU/ping ka/C",
            "CPU % ka/C",
            "p99 interval err ka/C",
            "shm/dest steady ka/C",
            "shm/dest peak ka/C",
            "startup→1st ping ka/C",
            "note",
        ],
        ratio_rows,
    )
    side_rows = []
    for n in ns:
        for side in ("ka", "c"):
            r = _get(runs, side, n)
            if r is None:
                continue
            name = "ka-kemi" if side == "ka" else "C"
            if "failed" in r or "crashed" in r:
                side_rows.append([f"{n:,}", name, f"**{_why_not(r)}**"] + [""] * 11)
                continue
            ie: IntervalErr | dict[str, float] = r.get("interval_err_ms") or {}
            add = [a for a in (r.get("add_to_first_ping_s") or []) if a is not None]
            mem = _memory_errors(r)
            side_rows.append(
                [
                    f"{n:,}",
                    name + (f" (**{mem} shm errors: does not fit**)" if mem else ""),
                    fmt(r.get("cpu_pct")),
                    fmt(r.get("us_per_ping")),
                    f"{fmt(r.get('shm_kb_per_dest_steady'))} / "
                    f"{fmt(r.get('shm_kb_per_dest_peak'))}",
                    f"{fmt(ie.get('p50'))} / {fmt(ie.get('p99'))} / {fmt(ie.get('max'))}",
                    fmt(r.get("burst_factor_100ms")),
                    fmt(r.get("round_span_s")),
                    fmt(r.get("pings_per_expected")),
                    f"{r.get('kamailio_socket_drops')} "
                    f"({r.get('kamailio_socket_drops_since_start')})",
                    f"{fmt(r.get('answering_pings_retransmitted_pct'))} / "
                    f"{fmt(r.get('answering_dests_retransmitted_pct'))}",
                    fmt(r.get("startup_to_first_ping_s")),
                    fmt(max(add)) if add else "–",
                    fmt(r.get("shm_peak_mb")),
                ]
            )
    sides = md_table(
        [
            "N",
            "side",
            "CPU % (all procs)",
            "µs CPU/ping",
            "shm KB/dest steady / peak",
            "interval err ms p50 / p99 / max",
            "burst (max/mean per 100 ms)",
            "round span s",
            "pings / expected",
            "rcv drops window (since start)",
            "answering retx % pings / dests",
            "startup → 1st ping s",
            "add → 1st ping s (max)",
            "shm peak MB",
        ],
        side_rows,
    )
    target_rows: list[list[object]] = []
    for n in ns:
        k, c = _get(runs, "ka", n), _get(runs, "c", n)
        if not _ok(k):
            target_rows.append([f"{n:,}", "ka-kemi runs at this N", _why_not(k), "MISSED"])
            continue
        assert k is not None
        cv = c if _ok(c) else None
        limit = 1.3 if n <= 100 else 1.0
        rr = ratio(k.get("us_per_ping"), cv.get("us_per_ping")) if cv else None
        target_rows.append(
            [
                f"{n:,}",
                f"CPU/ping ≤ {limit}× C",
                fmt(rr),
                verdict(rr, limit, "x") if cv else "no C run to compare",
            ]
        )
        ie_k: IntervalErr | dict[str, float] = k.get("interval_err_ms") or {}
        p99 = ie_k.get("p99")
        target_rows.append(
            [f"{n:,}", "p99 interval error ≤ 10 ms", fmt(p99), verdict(p99, 10, " ms")]
        )
        burst = k.get("burst_factor_100ms")
        target_rows.append(
            [
                f"{n:,}",
                "pings spread, no burst (busiest 100 ms ≤ 2× mean)",
                fmt(burst),
                verdict(burst, 2.0, "x"),
            ]
        )
        if n >= 10000 or n == max(ns):
            retx = k.get("answering_pings_retransmitted_pct")
            target_rows.append(
                [
                    f"{n:,}",
                    "0 retransmissions needed by answering dests",
                    f"{fmt(retx)} %",
                    verdict(retx, 0.0, " %"),
                ]
            )
            drops = k.get("kamailio_socket_drops")
            target_rows.append(
                [f"{n:,}", "0 kernel receive drops", drops, verdict(float(drops or 0), 0.0)]
            )
        shm_k = k.get("shm_kb_per_dest_steady")
        shm_c = (
            cast(float, cv.get("shm_kb_per_dest_steady")) if cv else 10.2
        )  # _ok(cv): it is there
        target_rows.append(
            [
                f"{n:,}",
                f"shm/dest ≤ C's ({fmt(shm_c)} KB{'' if cv else ', notes'})",
                fmt(shm_k),
                verdict(shm_k, shm_c, " KB"),
            ]
        )
        if n == 20000:
            fits = _ok(k) and (k.get("pings_per_expected") or 0) > 0.98
            target_rows.append(
                [f"{n:,}", "runs in -m 256", "yes" if fits else "no", "met" if fits else "MISSED"]
            )
        st = k.get("startup_to_first_ping_s")
        if n in (100, 10000) or (n == max(ns) and n < 10000):
            lim = 0.6 if n <= 100 else 1.0
            target_rows.append(
                [f"{n:,}", f"startup → first ping ≤ {lim} s", fmt(st), verdict(st, lim, " s")]
            )
        add = [a for a in (k.get("add_to_first_ping_s") or []) if a is not None]
        worst = max(add) if add else None
        target_rows.append(
            [f"{n:,}", "keepalive.add → first ping ≤ 0.5 s", fmt(worst), verdict(worst, 0.5, " s")]
        )
    targets = md_table(["N", "target (ka-kemi)", "measured", "verdict"], target_rows)
    return {"ratios": ratios, "sides": sides, "targets": targets}


if __name__ == "__main__":
    main()
