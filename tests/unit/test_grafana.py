"""docs/grafana: the dashboard is provisionable by file (no import-time inputs), picks its
Prometheus data source and Kamailio instance from variables, and every panel queries only
metrics ka-kemi exports (ka_core.ops.metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ka_core.ops.metrics import DestinationMetrics, PingerMetrics, render

GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "grafana"
DASHBOARD = json.loads((GRAFANA / "ka-kemi-dashboard.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
METRIC = re.compile(r"\b(kamailio_keepalive_\w+)(\{[^}]*\})?")


def exported() -> set[str]:
    """Every sample name of an exposition with one destination."""
    row = DestinationMetrics(
        uri="sip:10.0.0.1", owner="t", state=1, pings=1, timeouts=0, replies=1,
        by_class=(1, 0, 0, 0, 0), buckets=(1,) + (0,) * 9, rtt_sum_ms=1.0, state_changes=1,
    )  # fmt: skip
    text = render(PingerMetrics(1, 10, 0, 0.0, 0.0, False, 30), [row])
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def variables() -> dict[str, dict[str, object]]:
    return {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def test_the_dashboard_is_a_current_schema_without_import_inputs() -> None:
    assert DASHBOARD["schemaVersion"] >= 39
    assert "__inputs" not in DASHBOARD and "__requires" not in DASHBOARD
    assert "${DS_PROMETHEUS}" not in json.dumps(DASHBOARD)
    assert DASHBOARD["uid"] == "ka-kemi-health" and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) >= 8


def test_data_source_and_instance_are_variables() -> None:
    found = variables()
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    instance = found["instance"]
    assert instance["type"] == "query" and instance["datasource"] == DATASOURCE
    assert instance["query"]["query"] == "label_values(kamailio_keepalive_destinations, instance)"  # type: ignore[index]
    assert instance["includeAll"] and instance["multi"] and instance["allValue"] == ".*"


def test_every_panel_queries_exported_metrics_of_the_chosen_instance() -> None:
    names = exported()
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            uses = METRIC.findall(target["expr"])
            assert uses, target["expr"]
            for name, labels in uses:
                assert name in names, f"{panel['title']}: {name} is not exported"
                assert 'instance=~"$instance"' in labels, target["expr"]


def test_the_provisioning_files_point_at_the_dashboard() -> None:
    provider = (GRAFANA / "provisioning" / "dashboards" / "ka-kemi.yaml").read_text()
    for line in ("apiVersion: 1", "providers:", "type: file",
                 "path: /var/lib/grafana/dashboards/ka-kemi"):  # fmt: skip
        assert re.search(rf"^\s*-?\s*{re.escape(line)}\s*$", provider, re.M), line
    assert "\t" not in provider
    source = (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    assert re.search(r"^\s+type: prometheus$", source, re.M) and "datasources:" in source
