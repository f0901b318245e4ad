"""/metrics on a FakeKsr: the route, its access check, and counters after real pinger steps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ka_core.ops.access import HttpRequest
from kemi import functions, handler, pinger
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.test_pinger_glue import answer, tick

URI = "sip:10.0.0.1"


def scrape(glue: Glue, source: str = "127.0.0.1", method: str = "GET",
           auth: str | None = None, url: str = "/metrics") -> tuple[int, str, str]:  # fmt: skip
    glue.ksr.request = HttpRequest(method, url, source, auth)
    assert handler.KeepaliveHandler().ksr_xhttp_event(None, "xhttp") == 1
    code, _, ctype, text = glue.ksr.http_replies[-1]
    return code, ctype, text


def values(text: str) -> dict[tuple[str, str], float]:
    """(sample name, label text) -> value, for the test's one destination."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            extra = ",".join(
                f"{k}={v}" for k, v in sorted(s.labels.items()) if k not in ("uri", "owner")
            )
            out[(s.name, extra)] = s.value
    return out


def test_counters_follow_the_probes(glue: Glue) -> None:
    assert functions.ka_add_destination(URI, "t") == 1
    p = pinger.Pinger(glue.rt)
    code, ctype, text = scrape(glue)
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    v = values(text)
    assert v[("kamailio_keepalive_destination_state", "")] == 0, "listed before its first probe"
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.4)
    glue.clock.now = 1000.43
    answer(glue, 200)
    tick(glue, p, 1000.45)
    tick(glue, p, 1001.4)
    glue.clock.now = 1001.6
    answer(glue, 503)
    tick(glue, p, 1001.65)
    tick(glue, p, 1002.4)
    tick(glue, p, 1002.95)  # 500 ms timeout
    v = values(scrape(glue)[2])
    p_ = "kamailio_keepalive_"
    assert v[(p_ + "probes_sent_total", "")] == 3
    assert v[(p_ + "replies_total", "class=2xx")] == 1
    assert v[(p_ + "replies_total", "class=5xx")] == 1
    assert v[(p_ + "timeouts_total", "")] == 1
    assert v[(p_ + "state_changes_total", "")] == 2  # UNKNOWN -> UP -> DOWN
    assert v[(p_ + "destination_state", "")] == 2 and v[(p_ + "destination_up", "")] == 0
    assert v[(p_ + "rtt_seconds_count", "")] == 2
    assert v[(p_ + "rtt_seconds_bucket", "le=0.05")] == 1  # 30 ms
    assert v[(p_ + "rtt_seconds_bucket", "le=0.25")] == 2  # and 200 ms
    assert abs(v[(p_ + "rtt_seconds_sum", "")] - 0.23) < 1e-6
    assert v[(p_ + "destinations", "")] == 1 and v[(p_ + "pings_in_flight", "")] == 0
    assert functions.ka_del_destination(URI, "t") == 1
    assert URI not in scrape(glue)[2], "series disappear with the destination"


def test_metrics_access(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_METRICS_TOKEN='"0123456789abcdef0123"')
    assert scrape(glue)[0] == 403
    assert scrape(glue, auth="Bearer 0123456789abcdef0123")[0] == 200
    assert scrape(glue, source="192.0.2.1", auth="Bearer 0123456789abcdef0123")[0] == 403
    assert scrape(glue, method="POST", auth="Bearer 0123456789abcdef0123")[0] == 405
    assert "metrics scrape over HTTP from 127.0.0.1: 403" in " ".join(glue.ksr.texts("warn"))
    closed = glue_factory(KA_METRICS_PATH='""')
    code, ctype, _ = scrape(closed)
    assert (code, ctype) == (404, "application/json"), "no metrics: /metrics is just a bad path"
    nobody = glue_factory(KA_METRICS_ALLOW='""')
    assert scrape(nobody)[0] == 403
