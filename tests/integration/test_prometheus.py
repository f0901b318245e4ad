"""/metrics scraped by a real Prometheus (Debian's), and every panel of the Grafana dashboard
queried against it; the counters must equal what the SIP peers saw."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio, free_address
from tests.integration.test_keepalive import wait_state
from tests.peers.uas import ScriptedUAS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "ka-kemi-dashboard.json"


class Prometheus:
    def __init__(self, workdir: Path, target: Kamailio) -> None:
        self.ip, self.port = free_address()
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: kamailio\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target.ip}:{target.port}']\n"
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address={self.ip}:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def query(self, expr: str) -> list[dict[str, object]]:
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str, **labels: str) -> float:
        rows = [
            r for r in self.query(expr) if all(r["metric"].get(k) == v for k, v in labels.items())
        ]  # type: ignore[union-attr]
        assert len(rows) == 1, (expr, labels, rows)
        return float(rows[0]["value"][1])  # type: ignore[index]

    def wait_scrapes(self, n: int = 2) -> None:
        """Until ``n`` more scrapes of Kamailio happened (one a second)."""

        def last() -> float:
            rows = self.query('timestamp(up{job="kamailio"})')
            return float(rows[0]["value"][1]) if rows else 0.0  # type: ignore[index]

        deadline = time.monotonic() + 15
        while (start := last()) == 0.0:
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.3)
        while last() < start + n - 0.5:
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.3)
        up = self.query("up")
        assert up and all(r["value"][1] == "1" for r in up), up  # type: ignore[index]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[Prometheus] = []

    def make(kam: Kamailio) -> Prometheus:
        prom = Prometheus(tmp_path / f"prom{len(started)}", kam)
        started.append(prom)
        return prom

    yield make
    for prom in started:
        prom.stop()


def pings(uas: ScriptedUAS) -> int:
    """OPTIONS pings the peer got: tm retransmits over UDP, so one per Call-ID."""
    return len({r.call_id for r in uas.received("OPTIONS")})


def test_counters_equal_what_the_peers_saw_and_every_panel_has_data(
    kamailio_factory: KamailioFactory, uas_factory, prometheus_for
) -> None:
    ok, busy, dead = uas_factory(), uas_factory(), uas_factory()
    busy.answer(503)
    dead.blackhole()
    uris = {
        name: f"sip:{u.host}:{u.port}" for name, u in (("ok", ok), ("busy", busy), ("dead", dead))
    }
    kam = kamailio_factory(defines={"KA_DESTINATION": f'"{uris["ok"]}"'})
    prom = prometheus_for(kam)
    for name in ("busy", "dead"):
        assert result_of(kam, "ka_add_destination", uris[name], "t") == "1"
    wait_state(kam, uris["ok"], 1, owner="_params")
    wait_state(kam, uris["dead"], 2)
    time.sleep(4)
    prom.wait_scrapes(3)

    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        rows = prom.query(expr.replace("$__rate_interval", "5s").replace("$instance", ".*"))
        assert rows, f"dashboard query without data: {expr}"

    assert "Ok" in kam.kamcmd("keepalive.pause")
    time.sleep(1.5)  # the last pings answered or timed out (ping timeout 1 s)
    prom.wait_scrapes(2)
    p = "kamailio_keepalive_"
    for name, uas in (("ok", ok), ("busy", busy), ("dead", dead)):
        uri = uris[name]
        assert prom.value(p + "probes_sent_total", uri=uri) == pings(uas), name
    assert prom.value(p + "replies_total", uri=uris["ok"], **{"class": "2xx"}) == pings(ok)
    assert prom.value(p + "replies_total", uri=uris["busy"], **{"class": "5xx"}) == pings(busy)
    assert prom.value(p + "timeouts_total", uri=uris["dead"]) == pings(dead)
    assert prom.value(p + "timeouts_total", uri=uris["ok"]) == 0
    assert prom.value(p + "rtt_seconds_count", uri=uris["ok"]) == pings(ok)
    assert prom.value(p + "destination_state", uri=uris["ok"], owner="_params") == 1
    assert prom.value(p + "destination_state", uri=uris["busy"]) == 2
    assert prom.value(p + "state_changes_total", uri=uris["dead"]) == 1
    assert prom.value(p + "destinations") == 3 and prom.value(p + "paused") == 1
    assert prom.value(p + "pings_in_flight") == 0

    kam.kamcmd("keepalive.del", uris["busy"], "t")
    prom.wait_scrapes(2)
    assert prom.query(f'{p}destination_state{{uri="{uris["busy"]}"}}') == [], "gone with it"


def test_metrics_are_closed_to_others_and_can_require_a_token(
    kamailio_factory: KamailioFactory,
) -> None:
    token = "s3cret-0123456789abcdef"
    kam = kamailio_factory(defines={"KA_METRICS_TOKEN": f'"{token}"'})
    url = f"http://{kam.ip}:{kam.port}/metrics"

    def get(headers: dict[str, str], method: str = "GET") -> int:
        req = urllib.request.Request(url, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    assert get({}) == 403
    assert get({"Authorization": f"Bearer {token}"}) == 200
    assert get({"Authorization": f"Bearer {token}"}, "POST") == 405
    closed = kamailio_factory(defines={"KA_METRICS_ALLOW": '""'})
    req = urllib.request.Request(f"http://{closed.ip}:{closed.port}/metrics")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    err.value.close()
    assert err.value.code == 403


def test_a_scrape_of_1000_destinations(kamailio_factory: KamailioFactory) -> None:
    """About 2 MB of text from a SIP worker's pkg memory (-M 16 in the tests)."""
    dests = " ".join(f"sip:192.0.2.{i % 250 + 1}:{5060 + i // 250}" for i in range(1000))
    kam = kamailio_factory(defines={"KA_DESTINATION": f'"{dests}"', "KA_PING_INTERVAL": 30})
    start = time.monotonic()
    with urllib.request.urlopen(f"http://{kam.ip}:{kam.port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    took = time.monotonic() - start
    assert text.count("kamailio_keepalive_destination_state{") == 1000
    assert took < 2.0, took
