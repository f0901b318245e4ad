"""The RPC-at-scale benchmark's measurements: ``keepalive.list`` through JSON-RPC (curl),
kamcmd (full and paged) and raw BINRPC, and add / get / del (see ``bench.rpc_scale``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Required, TypeAlias, TypedDict

from bench.addresses import dest_addrs, sip_uri
from bench.kamailio import BenchKamailio, CKeepalive, InstanceArgs, KaKemi, ka_defines
from bench.responder_proc import Responder
from bench.stats import median
from tests.harness.rpc_client import BinrpcClient, kamcmd

BENCH_ID = 4
PAGE = 500


# what each measurement returns (and the result file holds)
class CurlList(TypedDict):
    http: int
    time_total_ms: float
    wall_ms: float
    bytes: int
    entries: int | None


class RawList(TypedDict):
    ms: float
    bytes: int
    entries: int
    fault: str


class KamcmdList(TypedDict):
    rc: int
    ms: float
    stdout_entries: int
    stdout_bytes: int
    message: str
    complete: bool
    half_printed: bool
    clear_error: bool
    points_to_path: bool


class Paging(TypedDict):
    pages: int
    page_ms_p50: float
    page_ms_max: float
    total_ms: float
    entries: int
    failed_pages: int


Ops: TypeAlias = dict[str, dict[str, float] | list[str]]


class SideRun(TypedDict, total=False):
    """One side's measurements (or why it failed), as written to the result file."""

    side: Required[str]
    n: Required[int]
    failed: str
    jsonrpc_list: list[CurlList]
    raw_list: list[RawList]
    kamcmd_list: KamcmdList
    kamcmd_paging: Paging | None
    ops: Ops
    alive: bool
    log_errors: list[str]


def make(side: str, n: int, wd: Path) -> BenchKamailio:
    dests = [sip_uri(a) for a in dest_addrs(n)]
    ip = f"127.99.{BENCH_ID}.{1 if side == 'c' else 2}"
    common = InstanceArgs(workdir=wd, ip=ip, port=5060, children=2, shm_mb=256)
    if side == "c":
        return CKeepalive(destinations=dests, defines={"BENCH_CHECK": "none"}, **common)
    return KaKemi(defines=ka_defines(dests, max_destinations=n + 100, BENCH_CHECK="none"), **common)


def curl_list(kam: BenchKamailio) -> CurlList:
    body = json.dumps({"jsonrpc": "2.0", "method": "keepalive.list", "id": 1})
    out_file = kam.workdir / "list.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            "curl",
            "-s",
            "-m",
            "20",
            "-o",
            str(out_file),
            "-w",
            "%{http_code} %{time_total}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            f"http://{kam.ip}:{kam.port}/RPC",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    wall = time.perf_counter() - t0
    code, total = ([*proc.stdout.split(), "0", "0"])[:2]
    entries = None
    try:
        data = json.loads(out_file.read_text())
        res = data.get("result")
        entries = len(res) if isinstance(res, list) else None
        if entries is None and isinstance(res, dict):
            entries = (
                1
                if "uri" in res
                else len(next((v for v in res.values() if isinstance(v, list)), []))
            )
    except (OSError, ValueError):
        pass
    return {
        "http": int(code),
        "time_total_ms": float(total) * 1000,
        "wall_ms": wall * 1000,
        "bytes": out_file.stat().st_size if out_file.exists() else 0,
        "entries": entries,
    }


def kamcmd_socket(kam: BenchKamailio) -> Path:
    return kam.ctl_socket if kam.side == "c" else kam.rpc_socket


def kamcmd_full_list(kam: BenchKamailio, n: int) -> KamcmdList:
    rc, out, err, secs = kamcmd(kamcmd_socket(kam), "keepalive.list")
    listed = out.count("uri:")
    return {
        "rc": rc,
        "ms": secs * 1000,
        "stdout_entries": listed,
        "stdout_bytes": len(out),
        "message": (err.strip() or out.strip())[:300] if listed < n else "",
        "complete": listed == n,
        "half_printed": 0 < listed < n,
        "clear_error": (listed == 0 and rc != 0) or "too big" in (out + err),
        "points_to_path": ("offset" in (out + err)) or ("JSON" in (out + err)),
    }


def kamcmd_paging(kam: BenchKamailio, n: int) -> Paging:
    times: list[float] = []
    seen, failures = 0, 0
    for offset in range(0, n, PAGE):
        rc, out, _err, secs = kamcmd(kamcmd_socket(kam), "keepalive.list", str(offset), str(PAGE))
        times.append(secs * 1000)
        seen += out.count("uri:")
        failures += rc != 0
    return {
        "pages": len(times),
        "page_ms_p50": median(times),
        "page_ms_max": max(times),
        "total_ms": sum(times),
        "entries": seen,
        "failed_pages": failures,
    }


def raw_list(kam: BenchKamailio) -> RawList:
    with BinrpcClient(kamcmd_socket(kam), timeout=30) as c:
        t0 = time.perf_counter()
        fault, values, size = c.call("keepalive.list")
        ms = (time.perf_counter() - t0) * 1000
    return {
        "ms": ms,
        "bytes": size,
        "entries": 0 if fault else len(values),
        "fault": str(values)[:200] if fault else "",
    }


def ops(kam: BenchKamailio, reps: int) -> Ops:
    """add / get / del of new destinations: stock kamcmd and raw BINRPC."""
    res: dict[str, list[float]] = {
        f"{tool}_{op}": [] for tool in ("kamcmd", "raw") for op in ("add", "get", "del")
    }
    errors: list[str] = []
    sock = kamcmd_socket(kam)
    for i in range(reps):
        uri = sip_uri(f"127.0.201.{2 * i + 1}")
        for op in ("add", "get", "del"):
            rc, out, err, secs = kamcmd(sock, f"keepalive.{op}", uri, "bench")
            res[f"kamcmd_{op}"].append(secs * 1000)
            if rc != 0 or "error" in (out + err).lower():
                errors.append(f"kamcmd {op}: {(out + err).strip()[:120]}")
        uri = sip_uri(f"127.0.202.{2 * i + 1}")
        with BinrpcClient(sock) as c:
            for op in ("add", "get", "del"):
                t0 = time.perf_counter()
                fault, values, _ = c.call(f"keepalive.{op}", uri, "bench")
                res[f"raw_{op}"].append((time.perf_counter() - t0) * 1000)
                if fault:
                    errors.append(f"raw {op}: {values}"[:120])
    stats: Ops = {k: {"p50": median(v), "max": max(v)} for k, v in res.items() if v}
    stats["errors"] = errors[:10]
    return stats


def one_side(side: str, n: int, wd: Path, reps: int) -> SideRun:
    responder = Responder(wd / f"{side}-responder.bin", ["--wild", "--answer", "odd"]).start()
    kam = make(side, n, wd / side)
    result: SideRun = {"side": side, "n": n}
    try:
        kam.start()
        time.sleep(7)  # steady pinging before measuring
        result["jsonrpc_list"] = [curl_list(kam) for _ in range(reps)]
        result["raw_list"] = [raw_list(kam) for _ in range(max(3, reps // 2))]
        result["kamcmd_list"] = kamcmd_full_list(kam, n)
        result["kamcmd_paging"] = kamcmd_paging(kam, n) if side == "ka" else None
        result["ops"] = ops(kam, reps)
        result["alive"] = kam.proc is not None and kam.proc.poll() is None
        result["log_errors"] = kam.log_errors()
    finally:
        kam.stop()
        responder.stop()
    return result
