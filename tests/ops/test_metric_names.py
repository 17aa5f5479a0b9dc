"""Every metric the dashboard and the alert rules query exists in `/metrics` of a real
gateway, with the labels they group and match on: a renamed metric or label would
otherwise leave a panel empty and an alert silent, with nothing to say so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.lifecycle.retention.job import RetentionJob
from gateway.lifecycle.retention.policy import defaults_of
from gateway.runtime.services import Services
from tests.api.conftest import Api, grant, make_consumer
from tests.api.test_metrics import scrape
from tests.api.test_syncs import C, afas_connector, wait_for_run
from tests.ops.promql import reads

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "sluis.json"
ALERTS = REPO / "docker" / "prometheus" / "alerts.yaml"
#: Prometheus's own, and the labels it adds to every scraped series.
PROMETHEUS_METRICS = frozenset({"up"})
TARGET_LABELS = frozenset({"job", "instance"})


def dashboard_exprs() -> list[str]:
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_tokenizer_reads_names_not_functions_or_labels() -> None:
    expr = (
        'sum by (tenant, le) (rate(a_bucket{outcome="failed", x=~"p,q"}[$__rate_interval]))'
        " / on (tenant) group_left max without (instance) (b offset 5m) > bool 0.5"
        " unless ignoring (job) histogram_quantile(0.9, c[5m:1m]) or vector(1)"
    )
    got = reads(expr)
    assert got.metrics == {"a_bucket", "b", "c"}
    assert got.labels == {"tenant", "le", "outcome", "x", "instance", "job"}
    assert got.equals == {("a_bucket", "outcome", "failed")}


def test_every_panel_and_rule_reads_at_least_one_metric() -> None:
    exprs = dashboard_exprs() + rule_exprs()
    assert len(exprs) > 20
    for expr in exprs:
        assert reads(expr).metrics, expr


@pytest.fixture
async def exposition(api: Api, services: Services, aiohttp_server: Any) -> str:
    """A gateway that has done what the panels show: a connector synced, a consumer that
    polled the feed, the ledger self-check of `sluis serve`, a retention run, and a push
    destination."""
    await afas_connector(api, aiohttp_server, people=60)
    await grant(api)
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    assert (await wait_for_run(api, started.headers["Location"]))["status"] == "succeeded"
    token = await make_consumer(api)
    assert (await api.get("/feed/v1/tenants/acme/events", token=token)).status == 200
    assert services.verify_ledgers() == {"acme": True}
    job = RetentionJob(
        services.store, services.metrics, defaults=lambda: defaults_of(services.settings),
        acting_for=lambda t: Acting(SYSTEM, services.ledger(t)), clock=services.clock,
        owner="test", interval=services.settings.retention_interval,
    )  # fmt: skip
    assert job.run_once() is not None
    made = await api.post("/admin/v1/tenants/acme/destinations",
                          {"url": "http://127.0.0.1:9/hooks", "from_start": False})  # fmt: skip
    assert made.status == 201, made.body
    await api.patch(made.headers["Location"], {"paused": True})
    return await scrape(api)


def _series(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets of its samples."""
    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    return series


@pytest.mark.parametrize("source", ["dashboard", "alert rules"])
async def test_every_queried_metric_and_label_is_exposed(exposition: str, source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    series = _series(exposition)
    missing, unlabelled, unmatched = set(), set(), set()
    for expr in exprs:
        got = reads(expr)
        ours = got.metrics - PROMETHEUS_METRICS
        missing |= {name for name in ours if not series.get(name)}
        known = set(TARGET_LABELS)
        for name in got.metrics:
            for labels in series.get(name, []):
                known |= labels.keys()
        known.add("le")  # histogram buckets are exposed with it
        unlabelled |= {(label, expr) for label in got.labels - known}
        for metric, label, value in got.equals:
            if metric in PROMETHEUS_METRICS:
                continue
            if not any(labels.get(label) == value for labels in series.get(metric, [])):
                unmatched.add((metric, label, value))
    assert not missing, f"{source} queries metrics /metrics does not expose: {sorted(missing)}"
    assert not unlabelled, f"{source} groups or matches on unknown labels: {sorted(unlabelled)}"
    assert not unmatched, f"{source} matches label values never exposed: {sorted(unmatched)}"
