"""The Grafana dashboards: generated from code, committed, and built on the contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from alerts import generate as alerts_gen

from . import contract, promql
from .conftest import ROOT

DASHBOARDS = ROOT / "dashboards" / "json"
OVERVIEW = DASHBOARDS / "jobpulse-overview.json"
JOB = DASHBOARDS / "jobpulse-job.json"


def load(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return model


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", []) or []


def targets(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(model):
        for target in panel.get("targets", []) or []:
            yield panel["title"], target


def test_committed_json_is_what_the_generator_builds() -> None:
    pytest.importorskip("grafana_foundation_sdk")
    from dashboards import generate as gen

    files = gen.render(alerts_gen.load_config())
    assert sorted(files) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert alerts_gen.stale(files, DASHBOARDS) == [], "run scripts/generate-assets"


@pytest.mark.parametrize("path", [OVERVIEW, JOB], ids=lambda p: p.stem)
def test_variables_datasource_service_queue_job(path: Path) -> None:
    model = load(path)
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["datasource", "service", "queue", "job"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    allowed = contract.series_names()
    for name in ("service", "queue", "job"):
        selector, label = promql.label_values(variables[name]["query"])
        assert label in contract.LABELS
        assert selector is not None
        found = promql.names(selector)
        assert found.metrics <= allowed, (name, found.metrics)
        assert found.labels <= contract.LABELS | {"__name__"}


@pytest.mark.parametrize("path", [OVERVIEW, JOB], ids=lambda p: p.stem)
def test_every_panel_query_uses_only_contract_metrics(path: Path) -> None:
    model = load(path)
    allowed = contract.series_names() | contract.RECORDING_RULES
    seen = 0
    for title, target in targets(model):
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        found = promql.names(target["expr"])
        assert found.metrics, f"{title}: no metric in {target['expr']}"
        assert found.metrics <= allowed, (title, found.metrics - allowed)
        assert found.labels <= contract.LABELS, (title, found.labels - contract.LABELS)
        seen += 1
    assert seen >= 25
    for annotation in model["annotations"]["list"]:
        found = promql.names(annotation["expr"])
        assert found.metrics <= contract.PROMETHEUS_BUILTINS
        assert found.labels <= contract.PROMETHEUS_LABELS


@pytest.mark.parametrize("path", [OVERVIEW, JOB], ids=lambda p: p.stem)
def test_panels_have_ids_datasources_and_positions(path: Path) -> None:
    model = load(path)
    ids = [p["id"] for p in panels(model)]
    assert len(ids) == len(set(ids))
    for panel in panels(model):
        assert panel["gridPos"]["w"] > 0
        assert panel["gridPos"]["h"] > 0
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel.get("description"), f"{panel['title']}: say what the panel shows"


def _exprs(model: dict[str, Any]) -> str:
    return "\n".join(t["expr"] for _, t in targets(model))


def test_overview_shows_what_the_issue_lists() -> None:
    model = load(OVERVIEW)
    titles = {p["title"] for p in panels(model)}
    for title in (
        "Final success ratio (1h)",
        "Time since last success",
        "Runs by outcome and action",
        "Duration p50 / p95",
        "In flight",
        "Stalled runs by reason",
        "Queue depth",
        "Oldest message age",
        "Queue wait p95",
        "Retries and quarantined",
        "Dependency latency p95",
        "Dependency timeouts and errors",
        "Telemetry errors",
        "Jobs",
    ):
        assert title in titles, title
    exprs = _exprs(model)
    for needle in (
        'jobpulse_outcome="success"',
        alerts_gen.LATCHED,
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "jobpulse_job_queue_wait_seconds_bucket",
        'jobpulse_action="retry"',
        'jobpulse_action="quarantine"',
        'jobpulse_dependency_outcome!="ok"',
        "jobpulse_dependency_unbounded_calls_total",
        "jobpulse_telemetry_errors_total",
    ):
        assert needle in exprs, needle


def test_job_drilldown_has_stalled_table_exemplars_and_trace_links() -> None:
    model = load(JOB)
    by_title = {p["title"]: p for p in panels(model)}
    table = by_title["Stalled runs"]
    assert table["type"] == "table"
    assert all(t.get("instant") and t.get("format") == "table" for t in table["targets"])
    assert "jobpulse_job_stalled" in table["targets"][0]["expr"]
    duration = by_title["Duration p50 / p95 / p99, with exemplars"]
    assert all(t.get("exemplar") is True for t in duration["targets"])
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert not variables["job"].get("multi"), "the drill-down is about one job"
    links = {link["title"]: link["url"] for link in model["links"]}
    cfg = alerts_gen.load_config()
    jaeger = [url for title, url in links.items() if "Jaeger" in title]
    tempo = [unquote(url) for title, url in links.items() if "Tempo" in title]
    assert jaeger
    assert all(url.startswith(cfg["links"]["jaeger_url"]) for url in jaeger)
    assert all("operation=${job:percentencode}" in url for url in jaeger)
    assert tempo
    assert all('"uid":"tempo"' in url and "span.jobpulse.job.name" in url for url in tempo)
    assert "Overview" in links


def test_dashboards_use_the_configured_uids() -> None:
    cfg = alerts_gen.load_config()
    assert load(OVERVIEW)["uid"] == cfg["dashboards"]["overview_uid"]
    assert load(JOB)["uid"] == cfg["dashboards"]["job_uid"]
