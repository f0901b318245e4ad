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

from bench.cli import bench_args, header
from bench.kamailio import PING_INTERVAL_S
from bench.ping_scale_run import ADD_ADDRS, SHM_MB, Run, idle_baseline, one_run
from bench.ping_scale_tables import make_tables, summary_line
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], sizes=True)
    quick = args.quick
    header("pinging scale", quick)
    ns = args.sizes or ([100, 1000] if quick else [100, 1000, 5000, 10000, 20000])
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


if __name__ == "__main__":
    main()
