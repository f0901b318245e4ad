"""Routing-path cost of a liveness check: a KEMI Python route answering OPTIONS statelessly.

Variants (one Kamailio each, ``children=1``, ``-x fm``, ``-m 64``, tm ``fr_timer`` 2000, every
destination pinged every 5 s by its own module and answered by the responder):

  none      Python route, no check                          (C cfg, 1 destination)
  c         + ``KSR.keepalive.is_alive`` (C), 1 destination
  ka        + ka-kemi ``ka_is_alive``, 1 destination
  ka1000    + ka-kemi ``ka_is_alive``, 1,000 destinations, the checked one added last
  c1000     + C ``is_alive``, 1,000 destinations, the checked one at the end of C's scan
            (extra: shows C's linear scan; not a target)
  ds        + dispatcher ``ds_select_dst(1, 4)`` (round robin) over 3 gateways, into $du
  sel       + ka-kemi ``ka_select("_params", "rr")`` over the same 3 gateways, into $du

Each instance has two UDP listeners: pings leave from (and replies return to) the first, the
measured OPTIONS go to the second, whose worker does nothing else.  Cost = CPU time of that
worker (``/proc/<pid>/task/*/schedstat``) per request, in two regimes:

* drain: SIGSTOP the worker, queue 200 OPTIONS in its socket, SIGCONT, wait for the 200
  replies; repeated (40,000 requests a run in full mode): pure per-request cost;
* sipp: ``-r 4000`` open loop (``-m 40000`` in full mode).

Variants run in random order in every rep; ratios are taken per rep, then the median.
"""

from __future__ import annotations

import random
import time

from bench.cli import bench_args, header
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.routing_cost_run import BATCH, build_instances, drain, sipp_run
from bench.routing_cost_tables import LABELS, TARGETS, make_tables, summarise


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    quick = args.quick
    header("routing-path cost", quick)
    drain_reqs = 10_000 if quick else 40_000
    drain_reps = 3 if quick else 7
    sipp_calls, sipp_rate = (4_000, 4000) if quick else (40_000, 4000)
    sipp_reps = 3 if quick else 5
    facts = machine_facts()
    wd = workdir("routing")
    responder = Responder(wd / "responder.bin", ["--wild", "--answer", "all"]).start()
    inst = build_instances(wd)
    t_start = time.monotonic()
    try:
        for kam in inst.values():
            kam.start(wait=False)
        for kam in inst.values():
            kam.wait_ready()
        time.sleep(6.5)  # every destination pinged once: the checked one is UP on both sides
        for kam in inst.values():
            drain(kam, 2000)  # warm-up: caches, first-call paths
        drain_runs: list[dict[str, dict[str, float]]] = []
        for rep in range(drain_reps):
            order = list(inst)
            random.shuffle(order)
            drain_runs.append({name: drain(inst[name], drain_reqs) for name in order})
            print(
                f"  drain rep {rep + 1}/{drain_reps}: "
                + ", ".join(f"{n} {drain_runs[-1][n]['us_per_req']:.1f}" for n in LABELS),
                flush=True,
            )
        sipp_runs: list[dict[str, dict[str, float]]] = []
        for rep in range(sipp_reps):
            order = list(inst)
            random.shuffle(order)
            sipp_runs.append(
                {name: sipp_run(inst[name], sipp_calls, sipp_rate, wd) for name in order}
            )
            print(
                f"  sipp rep {rep + 1}/{sipp_reps}: "
                + ", ".join(f"{n} {sipp_runs[-1][n]['us_per_req']:.1f}" for n in LABELS),
                flush=True,
            )
        states_ok = {name: not kam.log_errors() for name, kam in inst.items()}
        errors = {name: kam.log_errors() for name, kam in inst.items()}
    finally:
        for kam in inst.values():
            kam.stop()
        responder.stop()
        stop_all()
    d, s = summarise(drain_runs), summarise(sipp_runs)
    tables = make_tables(d, s, drain_runs, sipp_runs)
    print("\nRatios (ka-kemi vs C):\n" + tables["ratios"])
    print("\nPer-request CPU of the route worker, median [min–max]:\n" + tables["absolute"])
    print(
        f"\n({drain_reps} drain reps x {drain_reqs} requests, {sipp_reps} sipp reps x "
        f"{sipp_calls} calls at {sipp_rate}/s; {time.monotonic() - t_start:.0f} s)"
    )
    result = {
        "benchmark": "routing_cost",
        "mode": "quick" if quick else "full",
        "machine": facts,
        "params": {
            "children": 1,
            "shm_mb": 64,
            "allocator": "fm",
            "fr_timer_ms": 2000,
            "ping_interval_s": 5,
            "drain_requests": drain_reqs,
            "drain_reps": drain_reps,
            "batch": BATCH,
            "sipp_calls": sipp_calls,
            "sipp_rate": sipp_rate,
            "sipp_reps": sipp_reps,
        },
        "targets": TARGETS,
        "drain": {"summary": d, "runs": drain_runs},
        "sipp": {"summary": s, "runs": sipp_runs},
        "log_errors": errors,
        "clean_logs": states_ok,
        "tables": tables,
    }
    if not args.no_json:
        print("wrote", write_result("routing_cost", result))


if __name__ == "__main__":
    main()
