"""The pinging-scale benchmark's console summary line and tables: ka-kemi / C and
ka-kemi / dispatcher ratios, every side at every N, and ka-kemi's targets."""

from __future__ import annotations

from collections.abc import Sequence

from bench.ping_scale_run import IntervalErr, Run
from bench.stats import fmt, md_table, median, ratio, verdict


def summary_line(r: Run) -> str:
    if "failed" in r:
        return f"failed: {str(r['failed'])[:300]}"
    ie: IntervalErr | dict[str, float] = r.get("interval_err_ms") or {}
    return (
        f"cpu {fmt(r.get('cpu_pct'))}% {fmt(r.get('us_per_ping'))} us/ping, "
        f"p99 err {fmt(ie.get('p99'))} ms, pings/exp {fmt(r.get('pings_per_expected'))}, "
        f"retx {fmt(r.get('answering_pings_retransmitted_pct'))}%, "
        f"drops {r.get('kamailio_socket_drops')}, "
        f"shm {fmt(r.get('shm_kb_per_dest_steady'))} KB/dest, "
        f"first ping {fmt(r.get('startup_to_first_ping_s'))} s, "
        f"errors {len(r.get('log_errors') or [])}"
        + (
            f", dispatcher flags {flags}"
            if (flags := (r.get("after") or {}).get("ds_flags"))
            else ""
        )
    )


SIDE_NAMES = {"ka": "ka-kemi", "c": "C", "ds": "dispatcher"}
CPU_TARGET = {100: 1.3, 1000: 0.8, 5000: 0.6, 10000: 0.6}
"""ka-kemi's total CPU over C's (issue 31), where one is set."""
DS_TARGET = {1000: 1.0, 10000: 1.0}
"""ka-kemi's total CPU over dispatcher's, to stay below (issue 31)."""
IDLE_LIMIT_PCT = 0.03
"""'No measurable CPU' with no destination: under one 10 ms tick per 30 s window."""


def _ok(r: Run) -> bool:
    return "failed" not in r and "crashed" not in r and not r.get("shm_error_lines")


def _why_not(r: Run) -> str:
    if "failed" in r:
        return f"failed: {str(r['failed'])[:150]}"
    if "crashed" in r:
        cr = r["crashed"]
        alert = (cr.get("alerts") or [""])[0]
        return (
            f"does not fit: {cr['shm_errors']} shm allocation errors, then Kamailio "
            f"stopped after {cr['after_s']} s (`{alert[-70:]}`)"
        )
    return f"does not fit: {r.get('shm_error_lines')} shm allocation errors"


def spread(values: Sequence[float | None]) -> str:
    """``median [min–max]`` (one value: itself)."""
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(median(v))} [{fmt(min(v))}–{fmt(max(v))}]"


def _by(runs: list[Run], side: str, n: int) -> list[Run]:
    return [r for r in runs if r["side"] == side and r["n"] == n]


def _cpu_ratios(runs: list[Run], n: int, ref: str) -> list[float]:
    """ka / ``ref`` total CPU, within each repetition."""
    out = []
    for k in _by(runs, "ka", n):
        for c in _by(runs, ref, n):
            same = c.get("rep") == k.get("rep") and _ok(k) and _ok(c)
            if same and (kc := ratio(k.get("cpu_pct_raw"), c.get("cpu_pct_raw"))) is not None:
                out.append(kc)
    return out


def _cpu_cell(runs: list[Run], side: str, n: int) -> str:
    rs = _by(runs, side, n)
    good = [r for r in rs if _ok(r)]
    if good:
        return spread([r["cpu_pct_raw"] for r in good])
    return f"{SIDE_NAMES[side]} {_why_not(rs[0])}" if rs else "not run"


def _p99(r: Run) -> float | None:
    err = r.get("interval_err_ms")
    return None if err is None else float(err["p99"])


def _burst_bound(r: Run) -> float:
    return max(2 * float(r.get("mean_per_100ms") or 0), 50.0)


def _ratio_rows(runs: list[Run], ns: list[int], base: list[float]) -> list[list[str]]:
    idle_ka = [float(r["cpu_pct_raw"]) for r in _by(runs, "ka", 0)]
    rows = [["0", spread(idle_ka), "–", "–", spread(base), "–", "–", "–", "–"]]
    for n in ns:
        vs_c, vs_ds = _cpu_ratios(runs, n, "c"), _cpu_ratios(runs, n, "ds")
        per_ping = [
            spread([r.get("us_per_ping") for r in _by(runs, side, n) if _ok(r)])
            for side in SIDE_NAMES
        ]
        rows.append(
            [f"{n:,}", *(_cpu_cell(runs, side, n) for side in SIDE_NAMES), spread(base),
             spread(vs_c), spread(vs_ds), " / ".join(per_ping), f"{len(vs_c)} / {len(vs_ds)}"]
        )  # fmt: skip
    return rows


def _side_rows(runs: list[Run], ns: list[int]) -> list[list[str]]:
    rows = []
    for n in ns:
        for side, name in SIDE_NAMES.items():
            rs = _by(runs, side, n)
            good = [r for r in rs if _ok(r)]
            if not good:
                if rs:
                    rows.append([f"{n:,}", name, f"**{_why_not(rs[0])}**"] + [""] * 9)
                continue
            adds = [a for r in good for a in (r.get("add_to_first_ping_s") or []) if a is not None]
            rows.append(
                [
                    f"{n:,}",
                    name,
                    spread([r["cpu_pct_raw"] for r in good]),
                    spread([r.get("pings_per_expected") for r in good]),
                    spread([r.get("shm_kb_per_dest_steady") for r in good]),
                    spread([_p99(r) for r in good]),
                    str(max(int(r.get("max_per_100ms") or 0) for r in good)),
                    fmt(min(_burst_bound(r) for r in good)),
                    str(sum(int(r.get("kamailio_socket_drops") or 0) for r in good)),
                    fmt(max(float(r.get("answering_pings_retransmitted_pct") or 0) for r in good)),
                    fmt(max(float(r.get("startup_to_first_ping_s") or 0) for r in good)),
                    fmt(max(adds)) if adds else "–",
                ]
            )
    return rows


def _target_rows(runs: list[Run], ns: list[int], base: list[float]) -> list[list[str]]:
    idle_ka = [float(r["cpu_pct_raw"]) for r in _by(runs, "ka", 0)]
    rows = [["0", "ka-kemi CPU − baseline ≤ 0.03 % (no measurable CPU)",
             fmt(median(idle_ka) - median(base)) if idle_ka and base else "–",
             verdict(median(idle_ka) - median(base), IDLE_LIMIT_PCT, " %")
             if idle_ka and base else "not measured"]]  # fmt: skip
    for n in ns:
        ka = [r for r in _by(runs, "ka", n) if _ok(r)]
        c = [r for r in _by(runs, "c", n) if _ok(r)]
        if n in CPU_TARGET:
            ratios = _cpu_ratios(runs, n, "c")
            value = median(ratios) if ratios else None
            rows.append([f"{n:,}", f"CPU ≤ {CPU_TARGET[n]}× C (median of reps)",
                         fmt(value), verdict(value, CPU_TARGET[n], "x")])  # fmt: skip
        if n in DS_TARGET:
            ratios = _cpu_ratios(runs, n, "ds")
            value = median(ratios) if ratios else None
            rows.append([f"{n:,}", f"CPU < {DS_TARGET[n]}× dispatcher (median of reps)",
                         fmt(value), verdict(value, DS_TARGET[n], "x", strict=True)])  # fmt: skip
        if not ka:
            continue
        worst = max(int(r.get("max_per_100ms") or 0) / _burst_bound(r) for r in ka)
        rows.append([f"{n:,}", "busiest 100 ms ≤ max(2× mean, 50)", fmt(worst) + "× bound",
                     verdict(worst, 1.0, "x")])  # fmt: skip
        worst_p99 = max(_p99(r) or 0.0 for r in ka)
        rows.append(
            [f"{n:,}", "p99 interval error ≤ 10 ms", fmt(worst_p99), verdict(worst_p99, 10, " ms")]
        )
        drops = sum(int(r.get("kamailio_socket_drops") or 0) for r in ka)
        rows.append([f"{n:,}", "0 receive drops", str(drops), verdict(drops, 0)])
        retx = max(float(r.get("answering_pings_retransmitted_pct") or 0) for r in ka)
        rows.append([f"{n:,}", "0 retransmissions needed by answering peers",
                     fmt(retx) + " %", verdict(retx, 0, " %")])  # fmt: skip
        if c:
            kshm = median([r["shm_kb_per_dest_steady"] for r in ka])
            cshm = median([r["shm_kb_per_dest_steady"] for r in c])
            rows.append([f"{n:,}", f"shm/dest ≤ C's ({fmt(cshm)} KB)", fmt(kshm),
                         verdict(kshm, cshm, " KB")])  # fmt: skip
    return rows


def make_tables(runs: list[Run], ns: list[int], sides: Sequence[str] = ()) -> dict[str, str]:
    """``sides``: the sides that were run (only named under the tables: every column stays)."""
    base = [float(r["cpu_pct_raw"]) for r in _by(runs, "none", 0)]
    ratios_md = md_table(
        ["N", "ka-kemi CPU %", "C CPU %", "dispatcher CPU %",
         "baseline CPU % (none of the modules)", "ka/C CPU", "ka/ds CPU",
         "µs CPU/ping ka / C / ds (baseline subtracted)", "reps ka/C / ka/ds"],
        _ratio_rows(runs, ns, base),
    )  # fmt: skip
    sides_md = md_table(
        ["N", "side", "CPU % (all processes)", "pings / expected", "shm KB/dest",
         "p99 interval err ms", "busiest 100 ms (max)", "bound max(2×mean, 50)",
         "rcv drops (sum)", "answering retx % (max)", "startup → 1st ping s (max)",
         "add → 1st ping s (max)"],
        _side_rows(runs, ns),
    )  # fmt: skip
    targets_md = md_table(
        ["N", "target (ka-kemi)", "measured", "verdict"], _target_rows(runs, ns, base)
    )
    skipped = [SIDE_NAMES[s] for s in SIDE_NAMES if sides and s not in sides]
    if skipped:
        ratios_md += f"\n\nNot run (--sides): {', '.join(skipped)}."
    return {"ratios": ratios_md, "sides": sides_md, "targets": targets_md}
