"""The one-million benchmark's pure parts (``bench.million``): its address plan, what the
responders' logs say (destinations pinged per interval, the longest pause in sending), the
state changes in Kamailio's log, and the targets of issue 31 item 4 worded met or MISSED."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from bench.stats import fmt, verdict

FIRST_OCTET2 = 100
NETS = 16
"""Destinations ``127.100.0.1`` to ``127.115.255.254`` (last octet 1-254)."""
PER_NET = 256 * 254
MAX_N = NETS * PER_NET

P99_ERR_MS = 50.0
CPU_PCT = 60.0
SHM_KB = 1.0
RPC_MS = 20.0
PAUSE_MS = 50.0

_CHANGE = re.compile(r"destination (\S+) owner \S+: ([A-Z]+) -> ([A-Z]+)")


def dest_addr(i: int) -> str:
    """The ``i``-th destination address; odd last octet = an answering peer."""
    if not 0 <= i < MAX_N:
        raise ValueError(f"destination {i}: the plan holds 0..{MAX_N - 1}")
    return f"127.{FIRST_OCTET2 + i // PER_NET}.{(i // 254) % 256}.{i % 254 + 1}"


def dest_addrs(n: int) -> list[str]:
    return [dest_addr(i) for i in range(n)]


def flap_addrs(addrs: Sequence[str], fraction: float) -> list[str]:
    """``fraction`` of ``addrs`` (of all of them, not of the answering half), taken evenly
    spread from the answering ones (odd last octet): those go silent at once."""
    answering = [a for a in addrs if int(a.rsplit(".", 1)[1]) & 1]
    want = round(len(addrs) * fraction)
    if not 0 <= want <= len(answering):
        raise ValueError(f"cannot flap {want} of {len(answering)} answering destinations")
    if want == 0:
        return []
    step = len(answering) / want
    return [answering[int(k * step)] for k in range(want)]


def first_sends(ev: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint32]]:
    """(time s, destination) of each ping's first transmission (first of its dst and
    Call-ID), in time order: retransmissions are not a new ping."""
    key = (ev["dst"].astype(np.uint64) << np.uint64(32)) | ev["crc"].astype(np.uint64)
    _uniq, first_idx = np.unique(key, return_index=True)
    first = ev[first_idx]
    order = np.argsort(first["ts"], kind="stable")
    first = first[order]
    return first["ts"].astype(np.float64) / 1e9, first["dst"]


def pinged_per_interval(
    t: npt.NDArray[np.float64], dst: npt.NDArray[np.uint32], start: float, interval_s: float,
    end: float,
) -> list[int]:  # fmt: skip
    """Distinct destinations pinged in each whole interval from ``start`` before ``end``."""
    counts = []
    k = 0
    while start + (k + 1) * interval_s <= end + 1e-9:
        lo, hi = np.searchsorted(t, [start + k * interval_s, start + (k + 1) * interval_s])
        counts.append(len(np.unique(dst[lo:hi])))
        k += 1
    return counts


def max_gap_ms(ts_ns: npt.NDArray[np.int64], lo: float, hi: float) -> float | None:
    """The longest time between two consecutive datagrams sent (every one the responders
    received, ``ts_ns`` sorted) of those that start in [``lo``, ``hi``) s: a pause belongs
    to the phase in which it began."""
    a, b = np.searchsorted(ts_ns, [int(lo * 1e9), int(hi * 1e9)])
    seg = ts_ns[int(a) : min(int(b) + 1, len(ts_ns))]
    if len(seg) < 2:
        return None
    return float(np.diff(seg).max()) / 1e6


def state_changes(log: str, uris: Iterable[str]) -> dict[str, int]:
    """``"OLD -> NEW"``: how many of the pinger's state-change lines for ``uris`` say so."""
    wanted = set(uris)
    counts: dict[str, int] = {}
    for m in _CHANGE.finditer(log):
        if m.group(1) in wanted:
            pair = f"{m.group(2)} -> {m.group(3)}"
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def latency(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """Median and max of RPC round trips (ms)."""
    if not samples_ms:
        return {"calls": 0}
    return {"calls": len(samples_ms), "median": float(np.median(samples_ms)),
            "max": max(samples_ms)}  # fmt: skip


def rpc_rows(result: dict[str, object]) -> list[list[object]]:
    """(call, median ms, max ms, calls) of each RPC measured."""
    rpc = result.get("rpc_ms")
    if not isinstance(rpc, dict):
        return []
    return [[k, v.get("median"), v.get("max"), v.get("calls")] for k, v in rpc.items()]


def _rpc_max(result: dict[str, object]) -> float | None:
    rpc = result.get("rpc_ms")
    if not isinstance(rpc, dict):
        return None
    maxima = [float(v["max"]) for v in rpc.values() if isinstance(v, dict) and "max" in v]
    return max(maxima) if maxima else None


def _num(result: dict[str, object], *path: str) -> float | None:
    value: object = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)  # type: ignore[arg-type]


def late_destinations(
    t: npt.NDArray[np.float64], dst: npt.NDArray[np.uint32], n: int, start: float, end: float,
    interval_s: float,
) -> tuple[int, npt.NDArray[np.uint32]]:  # fmt: skip
    """(how many were never pinged, the others that went more than 1.5 intervals without a
    ping) between ``start`` and ``end``, from each edge to the first and last ping too:
    unlike a count per interval, a ping a few ms either side of an edge is not a miss."""
    sel = (t >= start) & (t < end)
    t, dst = t[sel], dst[sel]
    order = np.lexsort((t, dst))
    t, dst = t[order], dst[order]
    limit = 1.5 * interval_s
    if not len(t):
        return n, dst
    new = np.concatenate(([True], dst[1:] != dst[:-1]))
    last = np.concatenate((new[1:], [True]))
    late = (new & (t - start > limit)) | (last & (end - t > limit))
    late[1:] |= ~new[1:] & (np.diff(t) > limit)
    return int(n - int(new.sum())), np.unique(dst[late])


def figure_rows(r: dict[str, object]) -> list[list[object]]:
    """What one run measured, for the console and the page."""
    err = r.get("interval_err_ms") or {}
    first = r.get("interval_err_ms_from_first_round") or {}
    gaps = r.get("gaps_ms") or {}
    flap = r.get("flap") or {}
    per = r.get("pinged_per_interval") or []
    return [
        ["destinations, interval", f"{r.get('n'):,} at {r.get('interval_s')} s"],
        ["Kamailio start → pinger started (all in the table) s", r.get("ready_s")],
        ["Kamailio start → first ping at a peer s", r.get("startup_to_first_ping_s")],
        ["distinct destinations pinged per interval (each whole interval)",
         ", ".join(f"{c:,}" for c in per)],  # type: ignore[attr-defined]
        ["destinations > 1.5 intervals without a ping", r.get("late_destinations")],
        ["interval error ms p50 / p99 / max (pairs of pings from the steady interval on)",
         " / ".join(str(fmt(err.get(k))) for k in ("p50", "p99", "max"))],  # type: ignore[attr-defined]
        ["the same, first round → second (start-up lateness)",
         " / ".join(str(fmt(first.get(k))) for k in ("p50", "p99", "max"))],  # type: ignore[attr-defined]
        ["CPU % of one core, all Kamailio processes, one interval", r.get("cpu_pct")],
        ["responder CPU % each", ", ".join(fmt(c) for c in r.get("responder_cpu_pct") or [])],  # type: ignore[attr-defined]
        ["receive drops: Kamailio / responders", f"{r.get('kamailio_socket_drops')} / "
         f"{r.get('responder_drops')}"],
        ["shm KB per destination (real_used + table)", r.get("shm_kb_per_dest")],
        ["shm real_used over idle MB / table MB",
         f"{fmt(r.get('shm_steady_mb'))} / {fmt(r.get('table_mb'))}"],
        ["state file saves in the first round / wait for the last / in the steady interval",
         f"{r.get('saves_in_first_round')} / {fmt(r.get('quiet_wait_s'))} s / "
         f"{r.get('saves_in_steady_interval')}"],
        ["first keepalive.list call ms (builds the page order)", r.get("first_list_ms")],
        ["keepalive.pause of one → its state file save written s",
         ", ".join(fmt(s) for s in r.get("save_trigger_to_file_s") or [])],  # type: ignore[attr-defined]
        ["flap: destinations silenced, state changes in the log",
         f"{flap.get('destinations')}: {flap.get('state_changes')}"],  # type: ignore[attr-defined]
        ["the pinger's grid (pings go out together every) ms", r.get("grid_ms")],
        ["largest gap in sending ms: first round / steady / RPC / save / flap",
         " / ".join(str(fmt(gaps.get(k))) for k in  # type: ignore[attr-defined]
                    ("first_round", "steady", "rpc", "save", "flap"))],
    ]  # fmt: skip


def targets(result: dict[str, object]) -> list[list[str]]:
    """(target, measured, verdict) of issue 31 item 4 for one run's result."""
    n = int(result.get("n", 0))  # type: ignore[call-overload]
    late = result.get("late_destinations")
    rows = [
        [
            "every destination pinged each interval",
            "–" if late is None else f"{late:,} of {n:,} went > 1.5 intervals without a ping",
            "not measured" if late is None else "met" if late == 0 else f"MISSED ({late:,})",
        ]
    ]
    checks = (
        ("p99 interval error ≤ 50 ms", _num(result, "interval_err_ms", "p99"), P99_ERR_MS, " ms"),
        ("CPU ≤ 60 % of one core (all Kamailio processes)", _num(result, "cpu_pct"), CPU_PCT,
         " %"),
        ("shm ≤ 1 KB per destination (real_used + table)", _num(result, "shm_kb_per_dest"),
         SHM_KB, " KB"),
        ("keepalive.list / keepalive.get < 20 ms (max)", _rpc_max(result), RPC_MS, " ms"),
        ("no pause in pinging > 50 ms during a state file save",
         _num(result, "gaps_ms", "save"), PAUSE_MS, " ms"),
        ("no pause in pinging > 50 ms during the 10 % flap", _num(result, "gaps_ms", "flap"),
         PAUSE_MS, " ms"),
    )  # fmt: skip
    grid = _num(result, "grid_ms")
    for what, value, limit, unit in checks:
        strict = what.startswith("keepalive.")
        said = verdict(value, limit, unit, strict=strict)
        if "pause" in what and grid is not None and grid >= PAUSE_MS:
            said = f"not measurable: at this N the pings go out every {fmt(grid)} ms by design"
        rows.append([what, "–" if value is None else fmt(value) + unit, said])
    return rows
