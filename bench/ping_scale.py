"""Pinging scale: N destinations at ping_interval 5 s, half answering, half blackholed.

Sides: ``ka`` (ka-kemi), ``c`` (the C keepalive module) and ``ds`` (Kamailio dispatcher
probing every destination of one set, ``ds_probing_mode 1``, ``ds_ping_interval`` = the ping
interval; OPTIONS through tm as C's), chosen with ``--sides``.  Each repetition runs, one
after the other: the baseline (the same Kamailio with none of the modules), ka-kemi with no
destination, then for each N (100, 1,000, 5,000, 10,000) every side, in an order that
rotates between N and repetitions.  Each run is one Kamailio (``children=2``, ``-x fm``,
``-m 256``, tm ``fr_timer`` 2000) pinging ``127.0.X.Y:15300``; the responder (one socket,
``IP_PKTINFO``) answers odd Y from the address pinged and logs kernel receive times; a run
whose side sent it no ping fails.  Windows: 40 s at 100 destinations (10 ms CPU ticks:
below that a figure of 0.3 % is 12 ticks), 20 s above.  The baseline's shm stands for C's
and dispatcher's at N = 0.

Reported per run: CPU % of all Kamailio processes (raw) and µs CPU per ping (the baseline of
the same repetition subtracted), shm per destination (steady: median ``real_used``; peak:
``max_used``; ka-kemi's shared table, outside ``-m``, is added), p50/p99/max error of each
destination's ping interval, the busiest 100 ms, pings sent / expected, kernel receive drops,
pings to answering peers that needed a retransmission, start-up and an RPC add
(``keepalive.add``, ``dispatcher.add``) to first ping.  Tables give the median and min–max
over repetitions, ratios taken within one.
"""

from __future__ import annotations

import time

from bench.cli import bench_args, header
from bench.kamailio import PING_INTERVAL_S
from bench.ping_scale_run import (
    ADD_ADDRS,
    SHM_MB,
    SIDES,
    Run,
    ds_flags,
    idle_baseline,
    one_run,
)
from bench.ping_scale_tables import make_tables, summary_line
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result


def window_for(n: int, quick: bool) -> float:
    if quick:
        return 5.0
    return 40.0 if n <= 100 else 20.0


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], sizes=True, reps=3, sides=SIDES)
    sides: list[str] = args.sides
    quick = args.quick
    header("pinging scale", quick)
    ns = args.sizes or ([100, 1000] if quick else [100, 1000, 5000, 10000])
    reps = 1 if quick else args.reps
    warmup, idle_s = (6.0, 3.0) if quick else (10.0, 20.0)
    facts = machine_facts()
    wd = workdir("scale")
    t_start = time.monotonic()
    runs: list[Run] = []
    try:
        for rep in range(reps):
            idle_sides = ["none"] + (["ka"] if "ka" in sides else [])
            idle = {side: idle_baseline(side, wd, idle_s, rep) for side in idle_sides}
            idle["c"] = idle["ds"] = idle["none"]
            for side in idle_sides:
                cpu = idle[side]["cpu_ns_per_s"] / 1e7
                runs.append({"side": side, "n": 0, "rep": rep, "cpu_pct_raw": cpu})
                print(f"  rep {rep} N=0 {side}: cpu {cpu:.3f}%", flush=True)
            for i, n in enumerate(ns):
                first = (rep + i) % len(sides)  # each side leads in turn
                for side in sides[first:] + sides[:first]:
                    print(f"  rep {rep} N={n} {side} ...", flush=True)
                    try:
                        r = one_run(
                            side, n, wd, idle["none"] | {
                                k: idle[side][k] for k in ("real_used", "max_used")
                            },
                            warmup, window_for(n, quick),
                            ADD_ADDRS[:1] if quick or rep else ADD_ADDRS, rep=rep,
                            after=ds_flags if side == "ds" else None,
                        )  # fmt: skip
                    except Exception as exc:  # a side that cannot run at this N is a result
                        r = {"side": side, "n": n, "rep": rep,
                             "failed": f"{type(exc).__name__}: {exc}"[:2000]}  # fmt: skip
                    runs.append(r)
                    print("   ", summary_line(r), flush=True)
    finally:
        stop_all()
    tables = make_tables(runs, ns, sides)
    print("\n" + tables["ratios"] + "\n\n" + tables["sides"] + "\n\n" + tables["targets"])
    print(f"\n({time.monotonic() - t_start:.0f} s; {reps} repetitions, warm-up {warmup} s)")
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
            "windows_s": {n: window_for(n, quick) for n in ns},
            "idle_window_s": idle_s,
            "ns": ns,
            "reps": reps,
            "answering": "odd last octet (half)",
            "sides": sides,
        },
        "runs": runs,
        "tables": tables,
    }
    if not args.no_json:
        print(f"wrote {write_result('ping_scale', result)}")


if __name__ == "__main__":
    main()
