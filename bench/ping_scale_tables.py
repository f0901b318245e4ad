"""The pinging-scale benchmark's console summary line and tables: ka-kemi / C ratios,
both sides at every N, and ka-kemi's targets."""

from __future__ import annotations

from typing import cast

from bench.ping_scale_run import IntervalErr, Run
from bench.stats import fmt, md_table, ratio, verdict


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
    )


def _get(runs: list[Run], side: str, n: int) -> Run | None:
    for r in runs:
        if r["side"] == side and r["n"] == n:
            return r
    return None


def _ok(r: Run | None) -> bool:
    return r is not None and "failed" not in r and "crashed" not in r and not _memory_errors(r)


def _memory_errors(r: Run) -> int:
    return int(r.get("shm_error_lines") or 0)


def _why_not(r: Run | None) -> str:
    if r is None:
        return "not run"
    if "failed" in r:
        return f"failed: {str(r['failed'])[:150]}"
    if "crashed" in r:
        cr = r["crashed"]
        alert = (cr.get("alerts") or [""])[0]
        return (
            f"does not fit: {cr['shm_errors']} shm allocation errors, then Kamailio "
            f"stopped after {cr['after_s']} s (`{alert[-70:]}`)"
        )
    if _memory_errors(r):
        return f"does not fit: {_memory_errors(r)} shm allocation errors"
    return ""


def make_tables(runs: list[Run], ns: list[int]) -> dict[str, str]:
    ratio_rows = []
    for n in ns:
        k, c = _get(runs, "ka", n), _get(runs, "c", n)
        kv = k if _ok(k) else None
        cv = c if _ok(c) else None

        def r_(
            field: str, sub: str | None = None, kv: Run | None = kv, cv: Run | None = cv
        ) -> float | None:
            if kv is None or cv is None:
                return None
            # a numeric field, or a numeric member of a dict field, chosen by name
            a, b = kv.get(field), cv.get(field)
            if sub:
                a = cast("dict[str, float]", a or {}).get(sub)
                b = cast("dict[str, float]", b or {}).get(sub)
            return ratio(cast("float | None", a), cast("float | None", b))

        ratio_rows.append(
            [
                f"{n:,}",
                fmt(r_("us_per_ping")),
                fmt(r_("cpu_pct")),
                fmt(r_("interval_err_ms", "p99")),
                fmt(r_("shm_kb_per_dest_steady")),
                fmt(r_("shm_kb_per_dest_peak")),
                fmt(r_("startup_to_first_ping_s")),
                ("C " + _why_not(c)) if cv is None else "",
            ]
        )
    ratios = md_table(
        [
            "N",
            "µs CPU/ping ka/C",
            "CPU % ka/C",
            "p99 interval err ka/C",
            "shm/dest steady ka/C",
            "shm/dest peak ka/C",
            "startup→1st ping ka/C",
            "note",
        ],
        ratio_rows,
    )
    side_rows = []
    for n in ns:
        for side in ("ka", "c"):
            r = _get(runs, side, n)
            if r is None:
                continue
            name = "ka-kemi" if side == "ka" else "C"
            if "failed" in r or "crashed" in r:
                side_rows.append([f"{n:,}", name, f"**{_why_not(r)}**"] + [""] * 11)
                continue
            ie: IntervalErr | dict[str, float] = r.get("interval_err_ms") or {}
            add = [a for a in (r.get("add_to_first_ping_s") or []) if a is not None]
            mem = _memory_errors(r)
            side_rows.append(
                [
                    f"{n:,}",
                    name + (f" (**{mem} shm errors: does not fit**)" if mem else ""),
                    fmt(r.get("cpu_pct")),
                    fmt(r.get("us_per_ping")),
                    f"{fmt(r.get('shm_kb_per_dest_steady'))} / "
                    f"{fmt(r.get('shm_kb_per_dest_peak'))}",
                    f"{fmt(ie.get('p50'))} / {fmt(ie.get('p99'))} / {fmt(ie.get('max'))}",
                    fmt(r.get("burst_factor_100ms")),
                    fmt(r.get("round_span_s")),
                    fmt(r.get("pings_per_expected")),
                    f"{r.get('kamailio_socket_drops')} "
                    f"({r.get('kamailio_socket_drops_since_start')})",
                    f"{fmt(r.get('answering_pings_retransmitted_pct'))} / "
                    f"{fmt(r.get('answering_dests_retransmitted_pct'))}",
                    fmt(r.get("startup_to_first_ping_s")),
                    fmt(max(add)) if add else "–",
                    fmt(r.get("shm_peak_mb")),
                ]
            )
    sides = md_table(
        [
            "N",
            "side",
            "CPU % (all procs)",
            "µs CPU/ping",
            "shm KB/dest steady / peak",
            "interval err ms p50 / p99 / max",
            "burst (max/mean per 100 ms)",
            "round span s",
            "pings / expected",
            "rcv drops window (since start)",
            "answering retx % pings / dests",
            "startup → 1st ping s",
            "add → 1st ping s (max)",
            "shm peak MB",
        ],
        side_rows,
    )
    target_rows: list[list[object]] = []
    for n in ns:
        k, c = _get(runs, "ka", n), _get(runs, "c", n)
        if not _ok(k):
            target_rows.append([f"{n:,}", "ka-kemi runs at this N", _why_not(k), "MISSED"])
            continue
        assert k is not None
        cv = c if _ok(c) else None
        limit = 1.3 if n <= 100 else 1.0
        rr = ratio(k.get("us_per_ping"), cv.get("us_per_ping")) if cv else None
        target_rows.append(
            [
                f"{n:,}",
                f"CPU/ping ≤ {limit}× C",
                fmt(rr),
                verdict(rr, limit, "x") if cv else "no C run to compare",
            ]
        )
        ie_k: IntervalErr | dict[str, float] = k.get("interval_err_ms") or {}
        p99 = ie_k.get("p99")
        target_rows.append(
            [f"{n:,}", "p99 interval error ≤ 10 ms", fmt(p99), verdict(p99, 10, " ms")]
        )
        burst = k.get("burst_factor_100ms")
        target_rows.append(
            [
                f"{n:,}",
                "pings spread, no burst (busiest 100 ms ≤ 2× mean)",
                fmt(burst),
                verdict(burst, 2.0, "x"),
            ]
        )
        if n >= 10000 or n == max(ns):
            retx = k.get("answering_pings_retransmitted_pct")
            target_rows.append(
                [
                    f"{n:,}",
                    "0 retransmissions needed by answering dests",
                    f"{fmt(retx)} %",
                    verdict(retx, 0.0, " %"),
                ]
            )
            drops = k.get("kamailio_socket_drops")
            target_rows.append(
                [f"{n:,}", "0 kernel receive drops", drops, verdict(float(drops or 0), 0.0)]
            )
        shm_k = k.get("shm_kb_per_dest_steady")
        shm_c = (
            cast(float, cv.get("shm_kb_per_dest_steady")) if cv else 10.2
        )  # _ok(cv): it is there
        target_rows.append(
            [
                f"{n:,}",
                f"shm/dest ≤ C's ({fmt(shm_c)} KB{'' if cv else ', notes'})",
                fmt(shm_k),
                verdict(shm_k, shm_c, " KB"),
            ]
        )
        if n == 20000:
            fits = _ok(k) and (k.get("pings_per_expected") or 0) > 0.98
            target_rows.append(
                [f"{n:,}", "runs in -m 256", "yes" if fits else "no", "met" if fits else "MISSED"]
            )
        st = k.get("startup_to_first_ping_s")
        if n in (100, 10000) or (n == max(ns) and n < 10000):
            lim = 0.6 if n <= 100 else 1.0
            target_rows.append(
                [f"{n:,}", f"startup → first ping ≤ {lim} s", fmt(st), verdict(st, lim, " s")]
            )
        add = [a for a in (k.get("add_to_first_ping_s") or []) if a is not None]
        worst = max(add) if add else None
        target_rows.append(
            [f"{n:,}", "keepalive.add → first ping ≤ 0.5 s", fmt(worst), verdict(worst, 0.5, " s")]
        )
    targets = md_table(["N", "target (ka-kemi)", "measured", "verdict"], target_rows)
    return {"ratios": ratios, "sides": sides, "targets": targets}
