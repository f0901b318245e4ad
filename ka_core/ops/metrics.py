"""Prometheus text exposition (format 0.0.4) of the destinations and the pinger, sans-I/O.

Served on Kamailio's own HTTP port by the xhttp handler (``kemi.http_rpc``), not through
xhttp_prom: that module wants every series declared in kamailio.cfg and drops series not
updated within its timeout, while destinations come and go at runtime.  A destination's
series exist from the moment it is in the table and disappear with it.

Names follow Prometheus conventions: ``_total`` counters, seconds, ``le`` histogram buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ka_core.store.layout import CODE_CLASSES as CODE_CLASSES
from ka_core.store.layout import EJECTED_BY_RETRY_AFTER, FLAG_EJECTED
from ka_core.store.layout import RTT_BUCKETS_MS as RTT_BUCKETS_MS
from ka_core.store.layout import code_class as code_class
from ka_core.store.layout import rtt_bucket as rtt_bucket
from ka_core.version import __version__

PREFIX = "kamailio_keepalive_"
STATE_NAMES = ("unknown", "up", "down", "degraded")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DestinationMetrics(NamedTuple):
    uri: str
    owner: str
    state: int
    pings: int
    timeouts: int
    replies: int
    by_class: tuple[int, ...]
    """Final replies per ``CODE_CLASSES`` entry."""
    buckets: tuple[int, ...]
    """Replies per RTT bucket (not cumulative), ``len(RTT_BUCKETS_MS)`` entries."""
    rtt_sum_ms: float
    state_changes: int
    ejected: bool = False
    """Held out by passive health (the state shows DOWN, the cause is traffic)."""
    ejections: int = 0


Row = DestinationMetrics

ROW_FIELDS = (
    "uri", "owner", "state", "pings", "timeouts", "replies", "rtt_sum", "metrics", "flags",
    "ejections",
)  # fmt: skip
"""What /metrics asks the table for (``SharedTable.rows``)."""


def from_rows(rows: Iterable[Sequence[Any]]) -> list[DestinationMetrics]:
    """Table rows of ``ROW_FIELDS`` as /metrics shows them (the counters split by meaning)."""
    n_cls = len(CODE_CLASSES)
    return [
        DestinationMetrics(uri, owner, state, pings, timeouts, replies, m[:n_cls], m[n_cls:-1],
                           rtt_sum, m[-1], bool(flags & FLAG_EJECTED),
                           ejections & ~EJECTED_BY_RETRY_AFTER)
        for uri, owner, state, pings, timeouts, replies, rtt_sum, m, flags, ejections in rows
    ]  # fmt: skip


class PingerMetrics(NamedTuple):
    destinations: int
    capacity: int
    in_flight: int
    loop_lag_s: float
    loop_lag_max_s: float
    paused: bool
    ping_interval_s: int


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"]


def render(pinger: PingerMetrics, rows: Iterable[DestinationMetrics]) -> str:
    """The whole exposition; rows in any order (each family lists them in that order)."""
    dests = list(rows)
    labels = [f'uri="{_label(d.uri)}",owner="{_label(d.owner)}"' for d in dests]
    out: list[str] = []

    def gauge(name: str, text: str, value: float) -> None:
        out.extend(_family(name, "gauge", text))
        out.append(f"{PREFIX}{name} {_num(value)}")

    out.extend(_family("build_info", "gauge", "Always 1; the version label is ka-kemi's."))
    out.append(f'{PREFIX}build_info{{version="{_label(__version__)}"}} 1')
    gauge("destinations", "Destinations in the table.", pinger.destinations)
    gauge("destinations_capacity", "max_destinations: the table's capacity.", pinger.capacity)
    gauge("pings_in_flight", "Pings sent and not yet answered or timed out.", pinger.in_flight)
    gauge(
        "pinger_loop_lag_seconds",
        "How late the pinger's last step started after its deadline.",
        pinger.loop_lag_s,
    )
    gauge(
        "pinger_loop_lag_max_seconds",
        "The largest step lateness over the last 10 seconds.",
        pinger.loop_lag_max_s,
    )
    gauge("paused", "1 while all probing is paused (keepalive.pause).", int(pinger.paused))
    gauge("ping_interval_seconds", "The current ping_interval.", pinger.ping_interval_s)

    def per_destination(name: str, kind: str, text: str, value: Callable[[Row], int]) -> None:
        out.extend(_family(name, kind, text))
        out.extend(f"{PREFIX}{name}{{{lb}}} {value(d)}" for d, lb in pairs)

    pairs = list(zip(dests, labels, strict=True))
    per_destination(
        "destination_state", "gauge",
        "State of a destination: 0 unknown, 1 up, 2 down, 3 degraded (as keepalive.list).",
        lambda d: d.state,
    )  # fmt: skip
    per_destination(
        "destination_up", "gauge", "1 when the destination is UP, else 0.",
        lambda d: int(d.state == 1),
    )  # fmt: skip
    per_destination("probes_sent_total", "counter", "OPTIONS pings sent.", lambda d: d.pings)
    out += _family("replies_total", "counter", "Final replies to pings, by code class.")
    for d, lb in pairs:
        out += [
            f'{PREFIX}replies_total{{{lb},class="{cls}"}} {n}'
            for cls, n in zip(CODE_CLASSES, d.by_class, strict=True)
        ]
    per_destination(
        "timeouts_total", "counter", "Pings without a final reply in time.", lambda d: d.timeouts
    )
    per_destination(
        "state_changes_total", "counter", "State changes of the destination.",
        lambda d: d.state_changes,
    )  # fmt: skip
    if any(d.ejections or d.ejected for d in dests):  # passive health acted: its cause
        per_destination(
            "destination_ejected", "gauge",
            "1 while passive health holds the destination out (cause traffic), else 0.",
            lambda d: int(d.ejected),
        )  # fmt: skip
        per_destination(
            "ejections_total", "counter", "Times passive health ejected the destination.",
            lambda d: d.ejections,
        )  # fmt: skip
    out += _family("rtt_seconds", "histogram", "Round trip of answered pings.")
    for d, lb in pairs:
        running = 0
        for bound, n in zip(RTT_BUCKETS_MS, d.buckets, strict=True):
            running += n
            out.append(f'{PREFIX}rtt_seconds_bucket{{{lb},le="{bound / 1000}"}} {running}')
        out.append(f'{PREFIX}rtt_seconds_bucket{{{lb},le="+Inf"}} {d.replies}')
        out.append(f"{PREFIX}rtt_seconds_sum{{{lb}}} {_num(d.rtt_sum_ms / 1000.0)}")
        out.append(f"{PREFIX}rtt_seconds_count{{{lb}}} {d.replies}")
    return "\n".join(out) + "\n"
