"""Table churn: a million add/del cycles against ka-kemi's shared table (no Kamailio: the
table is pure Python), 5,000 destinations kept throughout in a table sized for 10,000.

Reported before and after: slots visited by a lookup that hits (the kept destinations) and
by one that misses (unknown URIs, what ``ka_is_alive`` of a stranger costs), the time of those
lookups, tombstones, and the table's size (a fixed buffer: memory cannot grow).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.cli import bench_args, header
from bench.recording import machine_facts, write_result
from bench.stats import fmt, md_table, verdict
from ka_core.store.ring import capacity_for
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri

MAX, KEPT = 10_000, 5_000


def lookups(table: SharedTable, keys: list[str]) -> dict[str, float]:
    probes = [table.chains.probe_length(k) for k in keys]
    t0 = time.perf_counter()
    for k in keys:
        table.find(k)
    us = (time.perf_counter() - t0) / len(keys) * 1e6
    return {"mean_slots": sum(probes) / len(probes), "max_slots": max(probes), "us": us}


def snapshot(table: SharedTable, hits: list[str], misses: list[str]) -> dict[str, Any]:
    used, tombs, empty = table.chains.slot_usage()
    return {"hit": lookups(table, hits), "miss": lookups(table, misses),
            "used": used, "tombstones": tombs, "empty": empty}  # fmt: skip


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    header("table churn", args.quick)
    cycles = 20_000 if args.quick else 1_000_000
    ring = capacity_for(MAX)
    size = buffer_size(MAX, ring)
    buf = bytearray(size)
    SharedTable.format_buffer(buf, MAX, ring)
    table = SharedTable(buf, threading.Lock())
    kept = [parse_uri(f"sip:10.1.{i // 250}.{i % 250 + 1}") for i in range(KEPT)]
    for uri in kept:
        table.insert(uri, "kept", interval_ms=5000, wall=0)
        if table.ring_capacity // 2 < KEPT:
            table.drain()
    hits = [u.key for u in kept]
    misses = [parse_uri(f"sip:10.9.{i // 250}.{i % 250 + 1}").key for i in range(2000)]
    before = snapshot(table, hits, misses)
    t0 = time.perf_counter()
    for i in range(cycles):
        uri = parse_uri(f"sip:10.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}")
        table.insert(uri, "churn", interval_ms=5000, wall=0)
        table.remove(uri.key, "churn")
        if i % 1000 == 0:
            table.drain()  # the pinger would
    per_cycle_us = (time.perf_counter() - t0) / cycles * 1e6
    after = snapshot(table, hits, misses)
    rows = []
    for name, snap in (("day one", before), (f"after {cycles:,} cycles", after)):
        h, m = snap["hit"], snap["miss"]
        rows.append([name, f"{fmt(h['mean_slots'])} / {h['max_slots']}", fmt(h["us"]),
                     f"{fmt(m['mean_slots'])} / {m['max_slots']}", fmt(m["us"]),
                     str(snap["used"]), str(snap["tombstones"]),
                     f"{size / 2**20:.1f} MiB"])  # fmt: skip
    growth = after["miss"]["mean_slots"] / before["miss"]["mean_slots"]
    tables = {
        "result": md_table(
            [
                "when",
                "hit: slots mean / max",
                "hit µs",
                "miss: slots mean / max",
                "miss µs",
                "used",
                "tombstones",
                "table",
            ],
            rows,
        ),
        "targets": md_table(
            ["target", "measured", "verdict"],
            [
                [
                    "a miss visits as many slots as on day one (≤ 1.1×)",
                    fmt(growth) + "×",
                    verdict(growth, 1.1, "x"),
                ],
                ["memory as on day one", "fixed buffer", "met"],
            ],
        ),
    }
    print(tables["result"] + "\n\n" + tables["targets"])
    print(f"\n{fmt(per_cycle_us)} µs per add/del cycle")
    result = {
        "benchmark": "churn", "mode": "quick" if args.quick else "full",
        "machine": machine_facts(), "params": {"max": MAX, "kept": KEPT, "cycles": cycles},
        "before": before, "after": after, "per_cycle_us": per_cycle_us, "tables": tables,
    }  # fmt: skip
    if not args.no_json:
        print(f"wrote {write_result('churn', result)}")


if __name__ == "__main__":
    main()
