"""``keepalive.cluster``: what the pinger publishes about the cluster, and the RPC reply.

The cluster view lives in the pinger process, but RPC is also served by SIP workers (JSON-RPC
over HTTP), so the pinger publishes a JSON status into the shared inbox buffer about once a
second (``ka_core.cluster.inbox``) and any process turns it into the reply here.

Reply: one struct for this node (mode, live nodes, destinations, how many it probes, digest)
then one per other node (status: ``live``, ``silent``, ``syncing`` or ``dmq-<status>``; when
last heard; its digest and counts).  With a URI: which node probes it now.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ka_core.cluster.hashing import owner
from ka_core.cluster.members import Membership
from ka_core.errors import InvalidUri, RpcFault
from ka_core.uri import parse_uri

RpcValue = int | str | float | dict[str, object] | list[object]


def status_json(members: Membership, now: float, mine: dict[str, object]) -> bytes:
    """What the pinger publishes: ``mine`` (this node's figures) and a row per other node."""
    peers = []
    for node in members.known()[1:]:
        peer = members.peers.get(node)
        dmq = "unknown" if members.dmq is None else members.dmq.get(node, "absent")
        peers.append(
            {
                "node": node, "status": members.status(node, now), "dmq": dmq,
                "heard_s": round(now - peer.last_heard, 2) if peer else -1,
                "digest": peer.digest if peer else "", "count": peer.count if peer else 0,
                "probing": peer.probing if peer else 0, "mode": peer.mode if peer else "",
            }
        )  # fmt: skip
    return json.dumps({"node": members.me, **mine, "peers": peers}).encode()


def rpc_view(status: bytes, params: Sequence[object]) -> list[RpcValue]:
    if not status:
        raise RpcFault(500, "cluster status not published yet, try again")
    doc = json.loads(status)
    if params:
        return [_who_probes(doc, params[0])]
    me: dict[str, object] = {
        "node": doc["node"],
        "this node": 1,
        "mode": doc["mode"],
        "channel": doc["channel"],
        "live nodes": " ".join(doc["live"]),
        "destinations": doc["destinations"],
        "probing": doc["probing"],
        "digest": doc["digest"],
        "heartbeat ms": doc["heartbeat_ms"],
        "messages sent": doc["sent"],
        "messages received": doc["received"],
        "messages bad": doc["bad"],
        "publishing": doc.get("publishing", 1),
    }
    rows: list[RpcValue] = [me]
    for peer in doc["peers"]:
        rows.append(
            {
                "node": peer["node"],
                "this node": 0,
                "status": peer["status"],
                "dmq": peer["dmq"],
                "last heard s": peer["heard_s"],
                "destinations": peer["count"],
                "probing": peer["probing"],
                "digest": peer["digest"],
                "mode": peer["mode"],
            }
        )
    return rows


def _who_probes(doc: dict[str, object], uri: object) -> dict[str, object]:
    try:
        key = parse_uri(uri).key
    except InvalidUri as exc:
        raise RpcFault(500, f"invalid destination: {exc}") from None
    live = [str(n) for n in doc["live"]]  # type: ignore[attr-defined]
    who = "every node" if doc["mode"] == "all" else owner(key, live)
    return {"uri": str(uri), "key": key, "probed by": who, "live nodes": " ".join(live)}


def metrics_text(status: bytes, prefix: str) -> str:
    """The cluster's families for /metrics, per node (``node`` label); empty before the
    pinger's first publication."""
    if not status:
        return ""
    doc = json.loads(status)
    out: list[str] = []

    def family(name: str, kind: str, text: str, rows: Sequence[tuple[str, object]]) -> None:
        out.extend([f"# HELP {prefix}{name} {text}", f"# TYPE {prefix}{name} {kind}"])
        out.extend(f"{prefix}{name}{labels} {value}" for labels, value in rows)

    me = doc["node"]
    peers = doc["peers"]
    family("cluster_live_nodes", "gauge", "Nodes this node counts live, itself included.",
           [("", len(doc["live"]))])  # fmt: skip
    family("cluster_node_live", "gauge", "1 if this node counts the node live.",
           [(f'{{node="{me}"}}', 1)]
           + [(f'{{node="{p["node"]}",status="{p["status"]}"}}', int(p["status"] == "live"))
              for p in peers])  # fmt: skip
    family("cluster_probing", "gauge", "Destinations each node probes (as it last reported).",
           [(f'{{node="{me}"}}', doc["probing"])]
           + [(f'{{node="{p["node"]}"}}', p["probing"]) for p in peers])  # fmt: skip
    family("cluster_destinations", "gauge", "Destinations in the replicated set, per node.",
           [(f'{{node="{me}"}}', doc["destinations"])]
           + [(f'{{node="{p["node"]}"}}', p["count"]) for p in peers])  # fmt: skip
    for name, field, text in (
        ("cluster_messages_sent_total", "sent", "KDMQ messages this node sent."),
        ("cluster_messages_received_total", "received", "KDMQ messages this node applied."),
        ("cluster_messages_bad_total", "bad", "Queued messages that could not be applied."),
    ):
        family(name, "counter", text, [("", doc[field])])
    return "\n".join(out) + "\n"
