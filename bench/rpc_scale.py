"""Management at scale: ``keepalive.list`` / ``add`` / ``get`` / ``del`` with N destinations
(10,000 in full mode) being pinged every 5 s, for both sides, through the stock tools.

* JSON-RPC over HTTP with ``curl`` (ka-kemi: its ``ksr_xhttp_event``; C: jsonrpcs over xhttp);
* stock ``kamcmd keepalive.list``: must not fail silently or half-print (kamcmd's replies are
  limited to 128 KB); ka-kemi's paging ``kamcmd keepalive.list <offset> <count>``;
* a raw BINRPC client (``ka_core.binrpc``) without kamcmd's limit, for comparison;
* ``keepalive.add`` / ``get`` / ``del`` of a new destination, with kamcmd and raw BINRPC.

Latency targets (ka-kemi; verdict on the p50, the max is shown): list <= 100 ms through the
documented large-list path (JSON-RPC, measured as curl's ``time_total``; the wall time with
curl's start-up is shown too), and add/del/get <= 5 ms with the stock kamcmd (its process
start-up included).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Required, TypeAlias, TypedDict

from bench.addresses import dest_addrs, sip_uri
from bench.cli import bench_args, header
from bench.kamailio import BenchKamailio, CKeepalive, InstanceArgs, KaKemi, ka_defines
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.rpc_client import BinrpcClient, kamcmd
from bench.stats import fmt, md_table, median, ratio, verdict

BENCH_ID = 4
LIST_TARGET_MS = 100
OP_TARGET_MS = 5
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


def summary(r: SideRun) -> dict[str, float | None]:
    js = [x for x in r.get("jsonrpc_list", []) if x["http"] == 200]
    raw = [x for x in r.get("raw_list") or [] if not x["fault"]]
    ops_ = r.get("ops") or {}
    return {
        "json_total_p50": median([x["time_total_ms"] for x in js]) if js else None,
        "json_total_max": max(x["time_total_ms"] for x in js) if js else None,
        "json_wall_p50": median([x["wall_ms"] for x in js]) if js else None,
        "json_entries": js[0]["entries"] if js else None,
        "json_complete": bool(js) and js[0]["entries"] == r["n"],
        "json_ok": len(js),
        "raw_p50": median([x["ms"] for x in raw]) if raw else None,
        "raw_bytes": raw[0]["bytes"] if raw else None,
        **{f"{k}_p50": v["p50"] for k, v in ops_.items() if isinstance(v, dict)},
        **{f"{k}_max": v["max"] for k, v in ops_.items() if isinstance(v, dict)},
    }


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
    k, c = s.get("ka", {}), s.get("c", {})
    json_ratio = (
        fmt(ratio(k.get("json_total_p50"), c.get("json_total_p50")))
        if k.get("json_complete") and c.get("json_complete")
        else f"– (C returns {c.get('json_entries')} of {n:,} entries)"
    )
    ratio_rows = [
        ["keepalive.list, JSON-RPC/HTTP (curl time_total)", json_ratio],
        [
            "keepalive.list: ka-kemi JSON-RPC / C raw BINRPC (C's only complete listing)",
            fmt(ratio(k.get("json_total_p50"), c.get("raw_p50"))),
        ],
        [
            "keepalive.list, raw BINRPC",
            fmt(ratio(k.get("raw_p50"), c.get("raw_p50")))
            if k.get("raw_p50")
            else "– (ka-kemi refuses BINRPC replies > 128 KB)",
        ],
        *[
            [
                f"keepalive.{op}, kamcmd",
                fmt(ratio(k.get(f"kamcmd_{op}_p50"), c.get(f"kamcmd_{op}_p50"))),
            ]
            for op in ("add", "get", "del")
        ],
        *[
            [
                f"keepalive.{op}, raw BINRPC",
                fmt(ratio(k.get(f"raw_{op}_p50"), c.get(f"raw_{op}_p50"))),
            ]
            for op in ("add", "get", "del")
        ],
    ]
    ratios = md_table([f"operation at N = {n:,} (p50)", "ka-kemi / C"], ratio_rows)
    side_rows = []
    for side in ("ka", "c"):
        r, sm = runs[side], s[side]
        name = "ka-kemi" if side == "ka" else "C"
        if "failed" in r:
            side_rows.append([name, f"failed: {str(r['failed'])[:200]}"] + [""] * 7)
            continue
        kl = r["kamcmd_list"]
        pg: Paging | dict[str, object] = r.get("kamcmd_paging") or {}
        side_rows.append(
            [
                name,
                f"{fmt(sm['json_total_p50'])} / {fmt(sm['json_total_max'])} "
                f"({fmt(sm['json_wall_p50'])} wall)"
                f" · {sm['json_entries']} entries",
                (
                    f"{fmt(sm['raw_p50'])} ({fmt((sm['raw_bytes'] or 0) / 1e6)} MB)"
                    if sm["raw_p50"]
                    else f"fault: `{str(r['raw_list'][0]['fault'])[:60]}`"
                ),
                (
                    "complete"
                    if kl["complete"]
                    else f"rc {kl['rc']}, {kl['stdout_entries']} printed: "
                    f"`{str(kl['message'])[:110]}`"
                ),
                (
                    f"{pg['pages']} pages, {fmt(pg['page_ms_p50'])} ms/page, "
                    f"{fmt(pg['total_ms'])} ms total, "
                    f"{pg['entries']} entries"
                    if pg
                    else "not supported (C ignores the parameters)"
                ),
                *[
                    f"{fmt(sm.get(f'kamcmd_{op}_p50'))} / {fmt(sm.get(f'raw_{op}_p50'))}"
                    for op in ("add", "get", "del")
                ],
            ]
        )
    sides = md_table(
        [
            "side",
            "list JSON-RPC ms p50 / max",
            "list raw BINRPC ms",
            "kamcmd keepalive.list",
            f"kamcmd paging ({PAGE}/page)",
            "add ms kamcmd / raw",
            "get ms kamcmd / raw",
            "del ms kamcmd / raw",
        ],
        side_rows,
    )
    target_rows = []
    if k:
        target_rows.append(
            [
                f"keepalive.list ≤ {LIST_TARGET_MS} ms via JSON-RPC (curl time_total, p50; max)",
                f"{fmt(k.get('json_total_p50'))}; {fmt(k.get('json_total_max'))}",
                verdict(k.get("json_total_p50"), LIST_TARGET_MS, " ms"),
            ]
        )
        target_rows.append(
            [
                "keepalive.list via JSON-RPC, wall incl. curl start (p50, info)",
                fmt(k.get("json_wall_p50")),
                "–",
            ]
        )
        kl = runs["ka"]["kamcmd_list"]
        ok = kl["complete"] or (
            not kl["half_printed"] and kl["clear_error"] and kl["points_to_path"]
        )
        target_rows.append(
            [
                "kamcmd keepalive.list: no silent failure / half print, points to the path",
                str(kl["message"] or "complete")[:90],
                "met" if ok else "MISSED",
            ]
        )
        for op in ("add", "get", "del"):
            v, vmax = k.get(f"kamcmd_{op}_p50"), k.get(f"kamcmd_{op}_max")
            target_rows.append(
                [
                    f"keepalive.{op} ≤ {OP_TARGET_MS} ms with kamcmd (p50; max of {reps})",
                    f"{fmt(v)}; {fmt(vmax)}",
                    verdict(v, OP_TARGET_MS, " ms"),
                ]
            )
    targets = md_table(
        ["target (ka-kemi, N = {})".format(f"{n:,}"), "measured", "verdict"], target_rows
    )
    tables = {"ratios": ratios, "sides": sides, "targets": targets}
    print("\n" + ratios + "\n\n" + sides + "\n\n" + targets)
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
