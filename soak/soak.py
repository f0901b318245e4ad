"""Bounded soak: 1,000 flapping destinations, RPC traffic and SIP load against one Kamailio.

    .venv/bin/python -m soak.soak --minutes 20        (make soak; SOAK_MINUTES=2 for a short run)

Reports shm (core.shmmem) and every Kamailio process's RSS at the start and the end, the
number of destinations listed at the end (must be all of them) and state flips seen.  Stops
by itself; everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

from tests.harness.kamailio import Kamailio, free_address
from tests.peers.uas import Request, ScriptedUAS

N = 1000
WARM_UP_S = 60


def memory(kam: Kamailio) -> dict[str, object]:
    shm = kam.ctl("core.shmmem")
    used = int(re.search(r"used:\s*(\d+)", shm).group(1))  # type: ignore[union-attr]
    rss, private = {}, {}
    for pid in kam.pids():
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except FileNotFoundError:
            continue
        fields = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
        rss[pid] = fields["Rss"]
        # RSS also counts Kamailio shm pages a process has touched; private memory does not.
        private[pid] = fields["Private_Clean"] + fields["Private_Dirty"]
    return {
        "shm_used": used, "rss_kb": rss, "rss_total_kb": sum(rss.values()),
        "private_kb": private, "private_total_kb": sum(private.values()),
    }  # fmt: skip


def flapping(req: Request) -> int:
    """Each destination answers 200 or 503 in 5 s phases of its own."""
    user = req.uri.split("@")[0]
    return 200 if (zlib.crc32(user.encode()) + int(time.time() / 5)) % 2 else 503


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", default="soak/last-result.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ka-soak-"))
    host, port = free_address()
    uas = ScriptedUAS(host, port, tcp=False)
    uas.set_behaviour(flapping)
    uas.start()
    uris = [f"sip:d{i}@{host}:{port}" for i in range(N)]
    kam = Kamailio(
        work, {"KA_DESTINATION": '"' + " ".join(uris) + '"', "KA_PING_INTERVAL": 2,
               "KA_PING_TIMEOUT_MS": 1000, "KA_DELETE_COUNTER": 0}, shm_mb=128,
    )  # fmt: skip
    kam.start()
    load = None
    try:
        load = subprocess.Popen(
            ["sipp", "-sn", "uac", "-r", "50", "-nostdin", "-nr", "-i", "127.0.0.1",
             f"{kam.ip}:{kam.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(WARM_UP_S)  # steady state: workers warmed up, a full ping round in flight
        start = memory(kam)
        deadline = time.monotonic() + args.minutes * 60
        rpc_calls = 0
        samples = [start]
        next_sample = time.monotonic() + 60
        while time.monotonic() < deadline:
            if time.monotonic() > next_sample:
                samples.append(memory(kam))
                next_sample += 60
            extra = f"sip:x{random.randint(0, 99)}@{host}:{port}"
            kam.kamcmd("keepalive.add", extra, "soak")
            kam.kamcmd("keepalive.get", random.choice(uris), "_params")
            kam.kamcmd("keepalive.list", "0", "50")
            kam.kamcmd("keepalive.del", extra, "soak")
            rpc_calls += 4
            time.sleep(0.5)
        end = memory(kam)
        listed = sum(
            kam.kamcmd("keepalive.list", str(offset), "500").count("owner: _params")
            for offset in range(0, N + 500, 500)
        )
        flips = kam.log().count("-> DOWN") + kam.log().count("-> UP")
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"), "minutes": args.minutes,
            "destinations": N, "listed_at_end": listed, "lost": N - listed,
            "state_changes": flips, "rpc_calls": rpc_calls, "requests_at_peer": len(uas.requests),
            "shm_used_start": start["shm_used"], "shm_used_end": end["shm_used"],
            "rss_total_kb_start": start["rss_total_kb"], "rss_total_kb_end": end["rss_total_kb"],
            "private_total_kb_start": start["private_total_kb"],
            "private_total_kb_end": end["private_total_kb"],
            "private_total_kb_per_minute": [m["private_total_kb"] for m in [*samples, end]],
            "shm_used_per_minute": [m["shm_used"] for m in [*samples, end]],
            "private_kb_start": start["private_kb"], "private_kb_end": end["private_kb"],
            "crash_lines": kam.crash_lines(),
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(result, indent=1))
        summary = {k: v for k, v in result.items() if not k.startswith("private_kb")}
        print(json.dumps(summary, indent=1))
    finally:
        if load is not None:
            load.terminate()
            load.wait(timeout=5)
        kam.stop()
        uas.stop()


if __name__ == "__main__":
    main()
