from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ka_core.ops.metrics import (
    CODE_CLASSES,
    RTT_BUCKETS_MS,
    DestinationMetrics,
    PingerMetrics,
    code_class,
    render,
    rtt_bucket,
)

PINGER = PingerMetrics(2, 100, 1, 0.002, 0.03, False, 30)


def row(uri: str = "sip:10.0.0.1", owner: str = "t", **kw: object) -> DestinationMetrics:
    values: dict[str, object] = {
        "uri": uri, "owner": owner, "state": 1, "pings": 10, "timeouts": 2, "replies": 8,
        "by_class": (7, 0, 1, 0, 0), "buckets": (3, 4, 0, 0, 0, 0, 0, 0, 0, 0),
        "rtt_sum_ms": 60.0, "state_changes": 1,
    }  # fmt: skip
    values.update(kw)
    return DestinationMetrics(**values)  # type: ignore[arg-type]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exposition_parses_and_has_every_family() -> None:
    text = render(PINGER, [row(), row("sip:10.0.0.2", "x", state=2, replies=0, buckets=(0,) * 10)])
    got = samples(text)
    lb = (("owner", "t"), ("uri", "sip:10.0.0.1"))
    p = "kamailio_keepalive_"
    assert got[(p + "destination_state", lb)] == 1
    assert got[(p + "destination_up", lb)] == 1
    assert got[(p + "probes_sent_total", lb)] == 10
    assert got[(p + "timeouts_total", lb)] == 2
    assert got[(p + "state_changes_total", lb)] == 1
    assert got[(p + "replies_total", (("class", "2xx"), *lb))] == 7
    assert got[(p + "replies_total", (("class", "4xx"), *lb))] == 1
    assert got[(p + "rtt_seconds_bucket", (("le", "0.005"), *lb))] == 3
    assert got[(p + "rtt_seconds_bucket", (("le", "0.01"), *lb))] == 7  # cumulative
    assert got[(p + "rtt_seconds_bucket", (("le", "+Inf"), *lb))] == 8
    assert got[(p + "rtt_seconds_count", lb)] == 8
    assert abs(got[(p + "rtt_seconds_sum", lb)] - 0.06) < 1e-9
    assert got[(p + "destination_up", (("owner", "x"), ("uri", "sip:10.0.0.2")))] == 0
    assert got[(p + "destinations", ())] == 2 and got[(p + "destinations_capacity", ())] == 100
    assert got[(p + "pings_in_flight", ())] == 1 and got[(p + "paused", ())] == 0
    assert got[(p + "pinger_loop_lag_max_seconds", ())] == 0.03


def test_labels_are_escaped() -> None:
    text = render(PINGER, [row('sip:a"b\\c@10.0.0.1', "o\nx")])
    labels = {s.labels["uri"] for f in text_string_to_metric_families(text) for s in f.samples
              if "uri" in s.labels}  # fmt: skip
    assert labels == {'sip:a"b\\c@10.0.0.1'}


def test_no_destinations_still_gives_the_pinger_series() -> None:
    got = samples(render(PINGER._replace(destinations=0), []))
    assert got[("kamailio_keepalive_destinations", ())] == 0


def test_buckets_and_classes() -> None:
    assert [rtt_bucket(x) for x in (0.1, 5, 5.01, 4999, 5000, 5001)] == [0, 0, 1, 9, 9, 10]
    assert len(RTT_BUCKETS_MS) == 10 and CODE_CLASSES[0] == "2xx"
    assert [code_class(c) for c in (100, 200, 299, 302, 404, 503, 606, 700)] == [
        -1, 0, 0, 1, 2, 3, 4, -1,
    ]  # fmt: skip
