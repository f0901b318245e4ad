"""The detection benchmark's tables: ka-kemi / C ratios, both sides' latencies, and
ka-kemi's targets."""

from __future__ import annotations

from bench.detection_analysis import ModeResult
from bench.kamailio import FR_TIMER_MS
from bench.stats import fmt, md_table, median, verdict

DOWN_TARGET_MS = FR_TIMER_MS + 100
UP_TARGET_MS = 100


def _stat(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return median(values), max(values)


def make_tables(
    results: dict[str, dict[str, ModeResult]], modes: list[str], notes: list[str]
) -> dict[str, str]:
    ratio_rows, side_rows = [], []
    for m in modes:
        kd, cd = _stat(results["ka"][m]["down_ms"]), _stat(results["c"][m]["down_ms"])
        ku, cu = _stat(results["ka"][m]["up_ms"]), _stat(results["c"][m]["up_ms"])
        ratio_rows.append(
            [
                m,
                fmt(kd[0] / cd[0]) if kd[0] and cd[0] else "–",
                fmt(ku[0] / cu[0]) if ku[0] and cu[0] else "–",
                f"{verdict(kd[1], DOWN_TARGET_MS, ' ms')} (max {fmt(kd[1])} ms)",
                f"{verdict(ku[1], UP_TARGET_MS, ' ms')} (max {fmt(ku[1])} ms)",
            ]
        )
        for side in ("ka", "c"):
            r = results[side][m]
            d, u, dr = _stat(r["down_ms"]), _stat(r["up_ms"]), _stat(r["down_from_reply_ms"])
            side_rows.append(
                [
                    m,
                    "ka-kemi" if side == "ka" else "C",
                    f"{fmt(d[0])} / {fmt(d[1])}",
                    len(r["down_ms"]),
                    f"{fmt(dr[0])} / {fmt(dr[1])}" if r["down_from_reply_ms"] else "–",
                    f"{fmt(u[0])} / {fmt(u[1])}",
                    len(r["up_ms"]),
                    len(r["missed_down"]) + len(r["missed_up"]),
                    len(r["predicted_ping"]),
                ]
            )
    ratios = md_table(
        [
            "failure",
            "DOWN p50 ka/C",
            "UP p50 ka/C",
            f"ka-kemi DOWN ≤ fr_timer+100 ms ({DOWN_TARGET_MS} ms)",
            f"ka-kemi UP ≤ {UP_TARGET_MS} ms after first 2xx",
        ],
        ratio_rows,
    )
    sides = md_table(
        [
            "failure",
            "side",
            "DOWN ms p50 / max (from 1st failing ping)",
            "trials",
            "DOWN ms p50 / max (from the failure reply)",
            "UP ms p50 / max (from 1st 2xx)",
            "trials",
            "missed",
            "ping time predicted",
        ],
        side_rows,
    )
    target_rows = []
    for m in modes:
        r = results["ka"][m]
        d, u = _stat(r["down_ms"]), _stat(r["up_ms"])
        missed_d, missed_u = len(r["missed_down"]), len(r["missed_up"])
        target_rows.append(
            [
                f"{m}: DOWN ≤ {DOWN_TARGET_MS} ms after the first failing ping (max)",
                f"{fmt(d[1])} ms" + (f", {missed_d} never DOWN" if missed_d else ""),
                "MISSED" if missed_d else verdict(d[1], DOWN_TARGET_MS, " ms"),
            ]
        )
        target_rows.append(
            [
                f"{m}: UP ≤ {UP_TARGET_MS} ms after the first 2xx (max)",
                f"{fmt(u[1])} ms" + (f", {missed_u} never UP" if missed_u else ""),
                "MISSED" if missed_u else verdict(u[1], UP_TARGET_MS, " ms"),
            ]
        )
    targets = md_table(["target (ka-kemi)", "measured", "verdict"], target_rows)
    return {"ratios": ratios, "sides": sides, "targets": targets}
