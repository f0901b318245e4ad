"""Detection latencies from the capture and the polls: each trial's DOWN and UP latency,
and the trials a side missed (definitions in ``bench.detection``)."""

from __future__ import annotations

from typing import Required, TypedDict

from bench.detection_capture import Packet
from bench.detection_poller import Poller
from bench.kamailio import FR_TIMER_MS, PING_INTERVAL_S


class ModeResult(TypedDict, total=False):
    """One side's trials of one failure mode: latencies (ms) and the peers they missed."""

    down_ms: Required[list[float]]
    up_ms: Required[list[float]]
    down_from_reply_ms: Required[list[float]]
    missed_down: Required[list[str]]
    missed_up: Required[list[str]]
    predicted_ping: Required[list[str]]
    missed_up_detail: list[dict[str, object]]


class Mark(TypedDict):
    """When a cycle made each mode's peers fail and recover, and when it saw all UP."""

    fail: dict[str, float]
    rec: dict[str, float]
    done: float


def analyse(
    packets: list[Packet],
    poller: Poller,
    marks: list[Mark],
    peers: dict[str, list[str]],
    modes: list[str],
    index: dict[str, int],
    side_ip: dict[str, str],
    results: dict[str, dict[str, ModeResult]],
) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    reqs: dict[tuple[str, str], list[float]] = {}  # (side ip, peer) -> first-transmission times
    sent: dict[tuple[str, str, str], float] = {}  # (side ip, peer, Call-ID) -> first sent
    replies: dict[tuple[str, str], list[tuple[float, int, str]]] = {}  # -> (t, code, Call-ID)
    for p in sorted(packets, key=lambda p: p.ts):
        key = (p.src, p.dst, p.call_id, p.first_line)
        if key in seen:
            continue  # loopback packets are captured twice; retransmissions too
        seen.add(key)
        if p.first_line.startswith("OPTIONS "):
            reqs.setdefault((p.src, p.dst), []).append(p.ts)
            sent.setdefault((p.src, p.dst, p.call_id), p.ts)
        elif p.first_line.startswith("SIP/2.0 "):
            code = int(p.first_line.split()[1])
            replies.setdefault((p.dst, p.src), []).append((p.ts, code, p.call_id))
    for side, ip in side_ip.items():
        for m in modes:
            res = results[side][m]
            for mark in marks:
                t_fail, t_rec = mark["fail"][m], mark["rec"][m]
                for peer in peers[m]:
                    pings = reqs.get((ip, peer), [])
                    after = [t for t in pings if t >= t_fail]
                    before = [t for t in pings if t < t_fail]
                    t_down = poller.first_time(side, index[peer], t_fail, 2)
                    if t_down is None or t_down > t_rec:
                        res["missed_down"].append(peer)
                    else:
                        ref = after[0] if after and after[0] <= t_down else None
                        if ref is None and before:
                            ref = before[-1] + PING_INTERVAL_S  # never on the wire
                            res["predicted_ping"].append(peer)
                        if ref is not None:
                            res["down_ms"].append((t_down - ref) * 1000)
                        fails = [
                            t
                            for t, code, _ in replies.get((ip, peer), [])
                            if t >= t_fail and code >= 300
                        ]
                        if fails and fails[0] <= t_down:
                            res["down_from_reply_ms"].append((t_down - fails[0]) * 1000)
                    # the first 2xx to a ping still pending: a reply to a ping older than
                    # fr_timer (e.g. one the kernel held while the link was down) ends no
                    # transaction on either side and cannot count
                    ok2xx = [
                        t
                        for t, code, cid in replies.get((ip, peer), [])
                        if t >= t_rec
                        and 200 <= code < 300
                        and t - sent.get((ip, peer, cid), float("-inf")) <= FR_TIMER_MS / 1000
                    ]
                    t_up = poller.first_time(side, index[peer], t_rec, 1)
                    if not ok2xx or t_up is None or t_up > mark["done"]:
                        res["missed_up"].append(peer)
                        res.setdefault("missed_up_detail", []).append(
                            {
                                "peer": peer,
                                "t_rec": t_rec,
                                "done": mark["done"],
                                "t_up": t_up,
                                "replies": [
                                    (t, code, cid, sent.get((ip, peer, cid)))
                                    for t, code, cid in replies.get((ip, peer), [])
                                    if t_rec - 6 <= t <= mark["done"] + 1
                                ],
                                "pings": [
                                    t
                                    for t in reqs.get((ip, peer), [])
                                    if t_rec - 6 <= t <= mark["done"] + 1
                                ],
                                "states": poller.transitions(
                                    side, index[peer], t_rec - 6, mark["done"] + 1
                                ),
                            }
                        )
                    else:
                        res["up_ms"].append((t_up - ok2xx[0]) * 1000)
