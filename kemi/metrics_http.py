"""``GET /metrics`` on Kamailio's HTTP port: the Prometheus exposition (``ka_core.ops.metrics``).

Runs in whichever SIP worker received the scrape and reads the shared table without the lock
(every field is a single aligned read; a scrape racing a result may show a counter one ping
behind, never a torn one).  Behind its own access check (``KA_METRICS_ALLOW``,
``KA_METRICS_TOKEN``): closed to everyone but loopback by default, like JSON-RPC.
"""

from __future__ import annotations

from ka_core.cluster import status as cluster_status
from ka_core.ops import metrics
from kemi.runtime import Runtime


def exposition(rt: Runtime) -> str:
    table = rt.table
    lag, lag_max, in_flight = table.header.pinger_stats()
    pinger = metrics.PingerMetrics(
        destinations=table.count,
        capacity=table.max_destinations,
        in_flight=in_flight,
        loop_lag_s=lag,
        loop_lag_max_s=lag_max,
        paused=table.header.paused,
        ping_interval_s=table.header.ping_interval,
    )
    text = metrics.render(pinger, metrics.from_rows(table.rows(metrics.ROW_FIELDS)))
    if rt.cluster is not None:  # KA_CLUSTER: per-node figures the pinger last published
        text += cluster_status.metrics_text(rt.cluster.inbox.status(), metrics.PREFIX)
    return text
