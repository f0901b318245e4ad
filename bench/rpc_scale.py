"""Management at scale: ``keepalive.list`` / ``add`` / ``get`` / ``del`` with N destinations
(10,000 in full mode) being pinged every 5 s, for both sides, through the stock tools.

* JSON-RPC over HTTP with ``curl`` (ka-kemi: its ``ksr_xhttp_event``; C: jsonrpcs over xhttp);
* stock ``kamcmd keepalive.list``: must not fail silently or half-print (kamcmd's replies are
  limited to 128 KB); ka-kemi's paging ``kamcmd keepalive.list <offset> <count>``;
* a raw BINRPC client (``ka_core.ops.binrpc``) without kamcmd's limit, for comparison;
* ``keepalive.add`` / ``get`` / ``del`` of a new destination, with kamcmd and raw BINRPC.

Latency targets (ka-kemi; verdict on the p50, the max is shown): list <= 100 ms through the
documented large-list path (JSON-RPC, measured as curl's ``time_total``; the wall time with
curl's start-up is shown too), and add/del/get <= 5 ms with the stock kamcmd (its process
start-up included).
"""

from __future__ import annotations

import time

from bench.cli import bench_args, header
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result
from bench.rpc_scale_run import PAGE, SideRun, one_side
from bench.rpc_scale_tables import make_tables, summary


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    quick = args.quick
    header("RPC at scale", quick)
    n = 1000 if quick else 10000
    reps = 5 if quick else 10
    facts = machine_facts()
    wd = workdir("rpc")
    t_start = time.monotonic()
    runs: dict[str, SideRun] = {}
    try:
        for side in ("ka", "c"):
            print(f"  {side} with {n} destinations ...", flush=True)
            try:
                runs[side] = one_side(side, n, wd, reps)
            except Exception as exc:
                runs[side] = {"side": side, "n": n, "failed": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        stop_all()
    s = {side: summary(r) if "failed" not in r else {} for side, r in runs.items()}
    tables = make_tables(runs, s, n, reps)
    print("\n" + tables["ratios"] + "\n\n" + tables["sides"] + "\n\n" + tables["targets"])
    print(f"({time.monotonic() - t_start:.0f} s)")
    result = {
        "benchmark": "rpc_scale",
        "mode": "quick" if quick else "full",
        "machine": facts,
        "params": {
            "n": n,
            "reps": reps,
            "page": PAGE,
            "children": 2,
            "shm_mb": 256,
            "allocator": "fm",
            "ping_interval_s": 5,
            "fr_timer_ms": 2000,
        },
        "runs": runs,
        "summary": s,
        "tables": tables,
    }
    if not args.no_json:
        print("wrote", write_result("rpc_scale", result))


if __name__ == "__main__":
    main()
