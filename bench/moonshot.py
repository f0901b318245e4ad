"""The moonshot: 100,000 destinations at ping_interval 30 s and 50,000 at 5 s, half answering,
ka-kemi alone on this 2-core machine (C keepalive does not fit 20,000 in ``-m 256``).

Each point is one Kamailio (``children=2``, ``-x fm``, ``-m 64``: pings need no tm
transaction, and ka-kemi's table is an anonymous mmap outside ``-m``) with the whole list as
``KA_DESTINATION``, the responder of ``bench.ping_scale``, and the same analysis: CPU of
every Kamailio process, interval error, drops, retransmissions, start-up to first ping.
Then ``keepalive.list`` over JSON-RPC (curl): the whole list, and pages of 100 at the start
and at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

from bench.cli import bench_args, header
from bench.kamailio import BenchKamailio
from bench.ping_scale_run import Run, idle_baseline, one_run
from bench.ping_scale_tables import spread, summary_line
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result
from bench.stats import fmt, md_table, verdict

POINTS = ((100_000, 30, 40.0, 60.0), (50_000, 5, 15.0, 20.0))
"""(N, interval s, warm-up s, window s): windows are whole intervals."""
SHM_MB = 64
PAGE = 100


def jsonrpc_ms(kam: BenchKamailio, params: list[int]) -> dict[str, float | int]:
    """One ``keepalive.list`` through HTTP JSON-RPC: wall ms, bytes, entries."""
    body = json.dumps({"jsonrpc": "2.0", "method": "keepalive.list", "params": params, "id": 1})
    t0 = time.perf_counter()
    out = subprocess.run(
        ["curl", "-s", "-m", "60", "-H", "Content-Type: application/json", "-d", body,
         f"http://{kam.ip}:{kam.port}/RPC"],
        capture_output=True, timeout=90, check=False,
    )  # fmt: skip
    wall = (time.perf_counter() - t0) * 1000
    try:
        entries = len(json.loads(out.stdout).get("result") or [])
    except ValueError:
        entries = -1
    return {"ms": wall, "bytes": len(out.stdout), "entries": entries}


def list_timings(n: int) -> Callable[[BenchKamailio], dict[str, object]]:
    def measure(kam: BenchKamailio) -> dict[str, object]:
        return {
            "page_first": [jsonrpc_ms(kam, [0, PAGE]) for _ in range(3)],
            "page_last": [jsonrpc_ms(kam, [n - PAGE, PAGE]) for _ in range(3)],
            "full": jsonrpc_ms(kam, []),
        }

    return measure


def tables(runs: list[Run], idle: dict[str, float]) -> dict[str, str]:
    rows, targets = [], []
    base = idle["cpu_ns_per_s"] / 1e7
    for r in runs:
        n, iv = r["n"], r.get("interval_s")
        if "failed" in r or "crashed" in r:
            rows.append(
                [f"{n:,} @ {iv} s", f"**{r.get('failed') or r.get('crashed')}**"] + [""] * 8
            )
            continue
        after = r.get("after") or {}
        pages = [p["ms"] for p in after.get("page_first", []) + after.get("page_last", [])]
        full = after.get("full", {})
        err = r.get("interval_err_ms")
        p99 = None if err is None else err["p99"]
        rows.append([
            f"{n:,} @ {iv} s", fmt(r.get("cpu_pct_raw")), fmt(base), fmt(p99),
            str(r.get("kamailio_socket_drops")), fmt(r.get("answering_pings_retransmitted_pct")),
            fmt(r.get("startup_to_first_ping_s")), spread(pages),
            f"{fmt(full.get('ms'))} ({full.get('entries')} entries, "
            f"{full.get('bytes', 0) // 1024} KiB)" if full.get("entries")
            else f"refused (413: over 4 MiB, pages only) in {fmt(full.get('ms'))} ms",
            fmt(r.get("shm_peak_mb")) + f" of {SHM_MB} MB; table {fmt(r.get('table_mb'))} MB",
        ])  # fmt: skip
        if n == 100_000:
            cpu = float(r.get("cpu_pct_raw") or 0)
            targets += [
                ["≤ 50 % of one core in all", fmt(cpu) + " %", verdict(cpu, 50, " %")],
                ["p99 interval error ≤ 10 ms", fmt(p99), verdict(p99, 10, " ms")],
                ["0 drops", str(r.get("kamailio_socket_drops")),
                 verdict(r.get("kamailio_socket_drops"), 0)],
                ["0 retransmissions needed by answering peers",
                 fmt(r.get("answering_pings_retransmitted_pct")) + " %",
                 verdict(r.get("answering_pings_retransmitted_pct"), 0, " %")],
                ["start-up to first ping ≤ 2 s", fmt(r.get("startup_to_first_ping_s")),
                 verdict(r.get("startup_to_first_ping_s"), 2, " s")],
                ["keepalive.list page of 100 over JSON-RPC ≤ 1 s (max)",
                 fmt(max(pages) / 1000 if pages else None),
                 verdict(max(pages) / 1000 if pages else None, 1, " s")],
            ]  # fmt: skip
    return {
        "points": md_table(
            [
                "N @ interval",
                "CPU % (all processes)",
                "baseline CPU %",
                "p99 interval err ms",
                "rcv drops",
                "answering retx %",
                "startup → 1st ping s",
                f"list page of {PAGE} ms (median [min–max])",
                "full list ms",
                "shm peak",
            ],
            rows,
        ),
        "targets": md_table(["target (100,000 @ 30 s)", "measured", "verdict"], targets),
    }


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    header("moonshot", args.quick)
    points = ((10_000, 30, 35.0, 30.0),) if args.quick else POINTS
    facts = machine_facts()
    wd = workdir("moon")
    t_start = time.monotonic()
    runs: list[Run] = []
    try:
        idle = idle_baseline("none", wd, 10.0)
        for n, interval, warmup, window in points:
            print(f"  N={n} @ {interval} s ...", flush=True)
            try:
                r = one_run(
                    "ka", n, wd, idle, warmup, window, [], interval_s=interval, shm_mb=SHM_MB,
                    extra={"KA_RPC_ADD_RATE": 0}, after=list_timings(n),
                )  # fmt: skip
            except Exception as exc:
                r = {"side": "ka", "n": n, "interval_s": interval,
                     "failed": f"{type(exc).__name__}: {exc}"[:2000]}  # fmt: skip
            runs.append(r)
            print("   ", summary_line(r), flush=True)
    finally:
        stop_all()
    t = tables(runs, idle)
    print("\n" + t["points"] + "\n\n" + t["targets"])
    print(f"\n({time.monotonic() - t_start:.0f} s)")
    result = {"benchmark": "moonshot", "mode": "quick" if args.quick else "full",
              "machine": facts, "params": {"points": points, "shm_mb": SHM_MB, "page": PAGE},
              "idle": idle, "runs": runs, "tables": t}  # fmt: skip
    if not args.no_json:
        print(f"wrote {write_result('moonshot', result)}")


if __name__ == "__main__":
    main()
