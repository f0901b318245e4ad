"""The RPC-at-scale benchmark's per-side summary and tables: ka-kemi / C ratios, both
sides, and ka-kemi's targets."""

from __future__ import annotations

from bench.rpc_scale_run import PAGE, Paging, SideRun
from bench.stats import fmt, md_table, median, ratio, verdict

LIST_TARGET_MS = 100
OP_TARGET_MS = 5


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


def make_tables(
    runs: dict[str, SideRun], s: dict[str, dict[str, float | None]], n: int, reps: int
) -> dict[str, str]:
    """Ratios, both sides and targets from each side's run and ``summary``."""
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
    return {"ratios": ratios, "sides": sides, "targets": targets}
