"""Routing-path cost of a liveness check: a KEMI Python route answering OPTIONS statelessly.

Variants (one Kamailio each, ``children=1``, ``-x fm``, ``-m 64``, tm ``fr_timer`` 2000, every
destination pinged every 5 s by its own module and answered by the responder):

  none      Python route, no check                          (C cfg, 1 destination)
  c         + ``KSR.keepalive.is_alive`` (C), 1 destination
  ka        + ka-kemi ``ka_is_alive``, 1 destination
  ka1000    + ka-kemi ``ka_is_alive``, 1,000 destinations, the checked one added last
  c1000     + C ``is_alive``, 1,000 destinations, the checked one at the end of C's scan
            (extra: shows C's linear scan; not a target)

Each instance has two UDP listeners: pings leave from (and replies return to) the first, the
measured OPTIONS go to the second, whose worker does nothing else.  Cost = CPU time of that
worker (``/proc/<pid>/task/*/schedstat``) per request, in two regimes:

* drain: SIGSTOP the worker, queue 200 OPTIONS in its socket, SIGCONT, wait for the 200
  replies; repeated (40,000 requests a run in full mode): pure per-request cost;
* sipp: ``-r 4000`` open loop (``-m 40000`` in full mode).

Variants run in random order in every rep; ratios are taken per rep, then the median.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TypedDict, cast

from bench.addresses import dest_addrs, sip_uri
from bench.cli import bench_args, header
from bench.kamailio import BenchKamailio, CKeepalive, InstanceArgs, KaKemi, ka_defines
from bench.paths import BENCH
from bench.probes import udp_socket_stats
from bench.procs import stop_all, track, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.stats import md_table, median, verdict

BENCH_ID = 1
CLIENT_IP = "127.99.1.250"
SCENARIO = BENCH / "scenarios" / "uac_options.xml"
TARGET = "127.0.100.1"
BATCH = 200
TARGETS = {"ka/c": 1.10, "ka1000/c": 1.0}
LABELS = {
    "none": "Python route, no check",
    "c": "C KSR.keepalive.is_alive, 1 dest",
    "ka": "ka-kemi ka_is_alive, 1 dest",
    "ka1000": "ka-kemi ka_is_alive, 1,000 dests (checked added last)",
    "c1000": "C is_alive, 1,000 dests (checked scanned last)",
}


class Spread(TypedDict):
    median: float
    min: float
    max: float
    reps: list[float]


def build_instances(wd: Path) -> dict[str, BenchKamailio]:
    others = [sip_uri(a) for a in dest_addrs(1000)[1:]]  # 999 besides the target
    target_uri = sip_uri(TARGET)
    c_target = f"{TARGET}:15300"  # C compares without "sip:"
    inst: dict[str, BenchKamailio] = {}
    specs = {
        "none": ("c", [target_uri], {"BENCH_CHECK": "none"}),
        "c": ("c", [target_uri], {"BENCH_CHECK": "c", "BENCH_TARGET": f'"{c_target}"'}),
        "ka": ("ka", [target_uri], {"BENCH_CHECK": "ka", "BENCH_TARGET": f'"{target_uri}"'}),
        "ka1000": (
            "ka",
            [*others, target_uri],
            {"BENCH_CHECK": "ka", "BENCH_TARGET": f'"{target_uri}"'},
        ),
        # C prepends each destination: the first modparam is the last one its scan reaches
        "c1000": (
            "c",
            [target_uri, *others],
            {"BENCH_CHECK": "c", "BENCH_TARGET": f'"{c_target}"'},
        ),
    }
    for i, (name, (side, dests, defs)) in enumerate(specs.items()):
        ping_ip, route_ip = f"127.99.{BENCH_ID}.{10 + 2 * i}", f"127.99.{BENCH_ID}.{11 + 2 * i}"
        common = InstanceArgs(
            workdir=wd / name,
            ip=ping_ip,
            port=5060,
            children=1,
            shm_mb=64,
        )
        extra: dict[str, str | int] = {
            "LISTEN_EXTRA": f"udp:{route_ip}:5060",
            "BENCH_MODE": "cost",
            **defs,
        }
        kam: BenchKamailio
        if side == "c":
            kam = CKeepalive(destinations=dests, defines=extra, **common)
        else:
            kam = KaKemi(defines=ka_defines(dests, max_destinations=1000, **extra), **common)
        kam.route_ip = route_ip
        inst[name] = kam
    return inst


def options(i: int, dst: str, port: int) -> bytes:
    return (
        f"OPTIONS sip:{dst}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CLIENT_IP}:{port};branch=z9hG4bK-bench-{i};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bench@{CLIENT_IP}>;tag=b{i}\r\n"
        f"To: <sip:{dst}:5060>\r\n"
        f"Call-ID: bench-{i}@{CLIENT_IP}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def thread_cpu_ns(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def drain(kam: BenchKamailio, requests: int) -> dict[str, float]:
    """SIGSTOP / queue BATCH / SIGCONT / collect, until ``requests`` were answered."""
    worker = kam.worker_for(f"{kam.route_ip}:5060")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((CLIENT_IP, 0))
    port = sock.getsockname()[1]
    packets = [options(i, kam.route_ip, port) for i in range(BATCH)]
    sock.settimeout(5.0)
    drops0 = (udp_socket_stats(kam.route_ip, 5060) or {}).get("drops", 0)
    batches = max(1, requests // BATCH)
    lost = 0
    wall = 0.0
    cpu0 = thread_cpu_ns(worker)
    try:
        for _ in range(batches):
            os.kill(worker, signal.SIGSTOP)
            deadline = time.monotonic() + 2
            while proc_state(worker) != "T" and time.monotonic() < deadline:
                time.sleep(0.0005)
            for pkt in packets:
                sock.sendto(pkt, (kam.route_ip, 5060))
            t0 = time.perf_counter()
            os.kill(worker, signal.SIGCONT)
            got = 0
            try:
                while got < BATCH:
                    sock.recv(65536)
                    got += 1
            except TimeoutError:
                lost += BATCH - got
            wall += time.perf_counter() - t0
    finally:
        os.kill(worker, signal.SIGCONT)
        sock.close()
    time.sleep(0.05)
    cpu1 = thread_cpu_ns(worker)
    answered = batches * BATCH - lost
    drops = (udp_socket_stats(kam.route_ip, 5060) or {}).get("drops", 0) - drops0
    return {
        "us_per_req": (cpu1 - cpu0) / 1000 / max(answered, 1),
        "wall_us_per_req": wall * 1e6 / max(answered, 1),
        "requests": batches * BATCH,
        "lost": lost,
        "kernel_drops": drops,
    }


def sipp_run(kam: BenchKamailio, calls: int, rate: int, wd: Path) -> dict[str, float]:
    worker = kam.worker_for(f"{kam.route_ip}:5060")
    stat = wd / f"sipp-{kam.route_ip}-{time.time_ns()}.csv"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((CLIENT_IP, 0))
        local_port = probe.getsockname()[1]
    cpu0 = thread_cpu_ns(worker)
    t0 = time.perf_counter()
    proc = track(
        subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(SCENARIO),
                "-i",
                CLIENT_IP,
                "-p",
                str(local_port),
                "-r",
                str(rate),
                "-m",
                str(calls),
                "-nostdin",
                "-trace_stat",
                "-stf",
                str(stat),
                "-fd",
                "3600",
                "-timeout",
                f"{calls // rate + 30}s",
                "-timeout_error",
                f"{kam.route_ip}:5060",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=wd,
        )
    )
    try:
        proc.wait(timeout=calls / rate + 40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    elapsed = time.perf_counter() - t0
    time.sleep(0.05)
    cpu1 = thread_cpu_ns(worker)
    ok = failed = 0
    if stat.exists():
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            head, last = lines[0].split(";"), lines[-1].split(";")
            ok = int(last[head.index("SuccessfulCall(C)")])
            failed = int(last[head.index("FailedCall(C)")])
    return {
        "us_per_req": (cpu1 - cpu0) / 1000 / max(ok, 1),
        "successful": ok,
        "failed": failed,
        "achieved_rate": ok / elapsed if elapsed else 0.0,
        "rc": proc.returncode,
    }


def summarise(
    runs: list[dict[str, dict[str, float]]],
) -> dict[str, Spread | dict[str, Spread]]:
    """Per-variant median [min-max] of µs/req, and per-rep ratios (under ``"ratios"``)."""
    out: dict[str, Spread | dict[str, Spread]] = {}
    for name in LABELS:
        vals = [r[name]["us_per_req"] for r in runs if name in r]
        out[name] = {"median": median(vals), "min": min(vals), "max": max(vals), "reps": vals}
    pairs = {
        "ka/c": ("ka", "c"),
        "ka1000/c": ("ka1000", "c"),
        "ka1000/c1000": ("ka1000", "c1000"),
        "c/none": ("c", "none"),
        "ka/none": ("ka", "none"),
        "c1000/c": ("c1000", "c"),
    }
    ratios: dict[str, Spread] = {}
    for key, (a, b) in pairs.items():
        per_rep = [r[a]["us_per_req"] / r[b]["us_per_req"] for r in runs if a in r and b in r]
        ratios[key] = {
            "median": median(per_rep),
            "min": min(per_rep),
            "max": max(per_rep),
            "reps": per_rep,
        }
    out["ratios"] = ratios
    return out


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
    dr, sr = cast("dict[str, Spread]", d["ratios"]), cast("dict[str, Spread]", s["ratios"])
    ratio_rows = []
    for key, label in (
        ("ka/c", "ka_is_alive 1 dest / C is_alive"),
        ("ka1000/c", "ka_is_alive 1,000 dests / C is_alive (1 dest)"),
        ("ka1000/c1000", "ka_is_alive 1,000 / C is_alive 1,000 (info)"),
        ("c/none", "C is_alive / no check (info)"),
        ("ka/none", "ka_is_alive / no check (info)"),
    ):
        target = TARGETS.get(key)
        ratio_rows.append(
            [
                label,
                f"{dr[key]['median']:.3f} [{dr[key]['min']:.2f}–{dr[key]['max']:.2f}]",
                f"{sr[key]['median']:.3f} [{sr[key]['min']:.2f}–{sr[key]['max']:.2f}]",
                f"≤ {target:.2f}" if target else "–",
                (
                    f"drain {verdict(dr[key]['median'], target, 'x')}; "
                    f"sipp {verdict(sr[key]['median'], target, 'x')}"
                )
                if target
                else "–",
            ]
        )
    ratio_table = md_table(
        ["ratio (per paired rep, median [min–max])", "drain", "sipp", "target", "verdict"],
        ratio_rows,
    )
    abs_rows = []
    for name, label in LABELS.items():
        dv, sv = cast(Spread, d[name]), cast(Spread, s[name])
        abs_rows.append(
            [
                label,
                f"{dv['median']:.1f} [{dv['min']:.1f}–{dv['max']:.1f}]",
                f"{sv['median']:.1f} [{sv['min']:.1f}–{sv['max']:.1f}]",
                f"{median([r[name]['wall_us_per_req'] for r in drain_runs]):.1f}",
                sum(int(r[name]["lost"]) + int(r[name]["kernel_drops"]) for r in drain_runs),
                sum(int(r[name]["failed"]) for r in sipp_runs),
                f"{median([r[name]['achieved_rate'] for r in sipp_runs]):.0f}",
            ]
        )
    abs_table = md_table(
        [
            "variant",
            "drain µs CPU/req",
            "sipp µs CPU/req",
            "drain wall µs/req",
            "drain lost+drops",
            "sipp failed",
            "sipp calls/s",
        ],
        abs_rows,
    )
    target_rows = []
    for key, label in (
        ("ka/c", "ka_is_alive, 1 dest ≤ 1.10× C is_alive"),
        ("ka1000/c", "ka_is_alive, 1,000 dests ≤ 1.0× C is_alive"),
    ):
        for regime, summ in (("drain", dr), ("sipp", sr)):
            target_rows.append(
                [
                    f"{label} ({regime})",
                    f"{summ[key]['median']:.3f}",
                    verdict(summ[key]["median"], TARGETS[key], "x"),
                ]
            )
    targets_table = md_table(
        ["target (median of per-rep ratios)", "measured", "verdict"], target_rows
    )
    print("\nRatios (ka-kemi vs C):\n" + ratio_table)
    print("\nPer-request CPU of the route worker, median [min–max]:\n" + abs_table)
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
        "tables": {"ratios": ratio_table, "absolute": abs_table, "targets": targets_table},
    }
    if not args.no_json:
        print("wrote", write_result("routing_cost", result))


if __name__ == "__main__":
    main()
