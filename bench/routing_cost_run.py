"""The routing-cost benchmark's instances and measurements: the five variants, and the CPU
time their route worker spends per request in the drain and sipp regimes (see
``bench.routing_cost``), and selection among three gateways (``ds``, ``sel``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.addresses import dest_addrs, sip_uri
from bench.kamailio import (
    BenchKamailio,
    CKeepalive,
    InstanceArgs,
    KaKemi,
    dispatcher_cfg,
    ka_defines,
)
from bench.paths import BENCH
from bench.probes import udp_socket_stats
from bench.procs import track

BENCH_ID = 1
CLIENT_IP = "127.99.1.250"
SCENARIO = BENCH / "scenarios" / "uac_options.xml"
TARGET = "127.0.100.1"
BATCH = 200


def build_instances(wd: Path) -> dict[str, BenchKamailio]:
    others = [sip_uri(a) for a in dest_addrs(1000)[1:]]  # 999 besides the target
    gateways = [sip_uri(a) for a in dest_addrs(6)[::2]]  # three that answer (odd last octet)
    ds_cfg = dispatcher_cfg(wd / "dispatcher.list", gateways)
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
        # selection among the same three gateways: dispatcher round robin (alg 4), ka_select rr
        "ds": ("c", [], {"BENCH_CHECK": "ds"}),
        "sel": ("ka", gateways, {"BENCH_CHECK": "sel"}),
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
            if name == "ds":
                kam.cfg_extra = ds_cfg
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
