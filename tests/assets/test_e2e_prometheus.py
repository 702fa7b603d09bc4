"""End to end, for real: the shipped rules and dashboards against a real Prometheus
scraping a real jobpulse process.

The test starts ``e2e_driver.py`` (jobpulse's own ``/metrics`` on 127.0.0.1,
jobs healthy, failing, stuck and backlogged) and Debian's ``prometheus`` on a
free port with a temporary data directory, 1 s scrape and evaluation
intervals and the rules regenerated from alerts/config.yaml with short
windows and ``for: 0s`` (the only overrides). Then, through Prometheus's HTTP
API, it checks that the exposition names are the contract's, that exactly the
alerts for the induced situations fire, and that every dashboard query parses
and returns data where it should. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from alerts import generate as alerts_gen

from . import contract
from .conftest import ROOT, require_binary
from .test_dashboards import JOB, OVERVIEW, load, targets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DRIVER = Path(__file__).with_name("e2e_driver.py")
SCRAPE_JOB = "jobpulse-e2e"

#: The one config, with windows short enough for a test and no `for:` delays.
OVERRIDES: dict[str, Any] = {
    "recording": {"latch_window": "1m"},
    "alerts": {
        "JobpulseNoRecentSuccess": {
            "for": "0s",
            "threshold": "1h",
            "overrides": [{"job": r"e2e\.stale", "threshold": "5s"}],
        },
        "JobpulseJobNeverSucceeded": {"for": "0s", "window": "1m"},
        "JobpulseHighFailureRatio": {"for": "0s", "window": "1m", "ratio": 0.5, "min_runs": 10},
        "JobpulseBacklogNoProgress": {"for": "0s", "window": "30s", "oldest_age": "30s"},
        "JobpulseBacklogGrowing": {"for": "0s", "window": "15s", "min_depth": 10},
        "JobpulseOldestMessageTooOld": {"for": "0s", "threshold": "5m"},
        "JobpulseRunsStalled": {"for": "0s"},
        "JobpulseRunsOverMaxRuntime": {"for": "0s"},
        "JobpulseRetryStorm": {"for": "0s", "window": "1m", "ratio": 0.5, "min_retries": 5},
        "JobpulsePoisonRunsQuarantined": {"for": "0s", "window": "10m"},
        "JobpulseZombieRuns": {"for": "0s"},
        "JobpulseUnboundedDependencyCalls": {"for": "0s", "window": "1m"},
        "JobpulseTelemetryErrors": {"for": "0s", "window": "10m"},
        "JobpulseTelemetryAbsent": {"for": "0s", "lookback": "10m"},
    },
}

#: (alert, the label that names what it is about, value): what the driver induces.
EXPECTED_FIRING = {
    ("JobpulseNoRecentSuccess", "jobpulse_job_name", "e2e.stale"),
    ("JobpulseJobNeverSucceeded", "jobpulse_job_name", "e2e.flaky"),
    ("JobpulseHighFailureRatio", "jobpulse_job_name", "e2e.flaky"),
    ("JobpulseRetryStorm", "jobpulse_job_name", "e2e.flaky"),
    ("JobpulsePoisonRunsQuarantined", "jobpulse_job_name", "e2e.poison"),
    ("JobpulseRunsStalled", "jobpulse_job_name", "e2e.stuck_heartbeat"),
    ("JobpulseRunsOverMaxRuntime", "jobpulse_job_name", "e2e.stuck_runtime"),
    ("JobpulseZombieRuns", "jobpulse_job_name", "e2e.zombie"),
    ("JobpulseBacklogNoProgress", "jobpulse_queue_name", "dead"),
    ("JobpulseOldestMessageTooOld", "jobpulse_queue_name", "dead"),
    ("JobpulseBacklogGrowing", "jobpulse_queue_name", "growing"),
    ("JobpulseUnboundedDependencyCalls", "jobpulse_dependency_name", "http:legacy"),
    ("JobpulseTelemetryErrors", "jobpulse_component", "e2e.induced"),
}
SUBJECT = {alert: label for alert, label, _ in EXPECTED_FIRING}
JOBS = ("e2e.healthy", "e2e.flaky", "e2e.stale", "e2e.poison", "e2e.stuck_heartbeat",
        "e2e.stuck_runtime", "e2e.zombie", "e2e.grower")  # fmt: skip

#: What Grafana would substitute for its own variables.
GRAFANA = {"$__rate_interval": "10s", "$__range": "2m", "$__interval": "5s"}

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (OSError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()  # type: ignore[no-any-return]


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        body = json.loads(http_get(f"{self.base}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def last_evaluation(self, group: str) -> str:
        (found,) = [g for g in self.api("rules")["groups"] if g["name"] == group]
        return str(found["lastEvaluation"])

    def firing(self) -> set[tuple[str, str, str]]:
        out = set()
        for alert in self.api("alerts")["alerts"]:
            name = alert["labels"]["alertname"]
            if alert["state"] == "firing":
                label = SUBJECT.get(name, "job")
                out.add((name, label, alert["labels"].get(label, "")))
        return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], int]]:
    logs = tmp_path_factory.mktemp("driver") / "stderr.log"
    env = {**os.environ, "OTEL_SERVICE_NAME": "jobpulse-e2e", "PYTHONUNBUFFERED": "1"}
    with logs.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=err, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the driver exited early:\n{logs.read_text()}")
        port = int(json.loads(line)["port"])
        wait_for("the driver's /metrics", lambda: http_get(f"http://127.0.0.1:{port}/metrics"), 20)
        yield proc, port
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prometheus(
    driver: tuple[subprocess.Popen[str], int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = require_binary("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    rules = work / "rules"
    alerts_gen.write(alerts_gen.render(alerts_gen.load_config(overrides=OVERRIDES)), rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules / "*.yaml")],
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{driver[1]}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus to be ready", lambda: http_get(f"{base}/-/ready"), 30)
        prom = Prometheus(base)
        wait_for(
            "the first scrape of the driver",
            lambda: prom.query(f'jobpulse_job_runs_total{{job="{SCRAPE_JOB}"}}'),
            30,
        )
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def induced(driver: tuple[subprocess.Popen[str], int], prometheus: Prometheus) -> Prometheus:
    """Quarantines and an internal error, after Prometheus has seen the zero series."""
    proc = driver[0]
    assert proc.stdin is not None
    assert proc.stdout is not None
    wait_for(
        "the poison job's zero series to be scraped",
        lambda: prometheus.query('jobpulse_job_runs_total{jobpulse_job_name="e2e.poison"}'),
        20,
    )
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"went": True}
    return prometheus


def test_exposition_names_are_the_contracts(
    driver: tuple[subprocess.Popen[str], int], induced: Prometheus
) -> None:
    """What jobpulse's own /metrics (core: _otel._start_prometheus) really exposes,
    once every situation (the internal error too) has happened."""
    text = http_get(f"http://127.0.0.1:{driver[1]}/metrics").decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    jobpulse = {name: kind for name, kind in types.items() if name.startswith("jobpulse")}
    assert set(jobpulse) == set(contract.METRICS), set(jobpulse) ^ set(contract.METRICS)
    for name, (_otel, kind) in contract.METRICS.items():
        assert jobpulse[name] == kind, (name, jobpulse[name], kind)
    samples = set(re.findall(r"^(jobpulse_\w+)\{", text, re.M))
    assert samples == contract.series_names(), samples ^ contract.series_names()
    # Labels: the contract's, plus the Python exporter's otel_scope_* (unused by the assets).
    labels = set(re.findall(r"[{,](\w+)=\"", "\n".join(re.findall(r"^jobpulse_.*$", text, re.M))))
    extra = {label for label in labels - contract.LABELS if not label.startswith("otel_scope_")}
    assert not extra, extra
    buckets = re.findall(r'^jobpulse_job_duration_seconds_bucket\{.*?le="([^"]+)"', text, re.M)
    assert {float(b) for b in buckets if b != "+Inf"} == {
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
        3600, 7200, 14400,
    }  # fmt: skip


def test_exactly_the_induced_alerts_fire(induced: Prometheus) -> None:
    def settled() -> bool:
        return induced.firing() == EXPECTED_FIRING

    try:
        wait_for("the induced alerts", settled, 120)
    except pytest.fail.Exception:
        got = induced.firing()
        pytest.fail(f"missing: {EXPECTED_FIRING - got}\nunexpected: {got - EXPECTED_FIRING}")
    # ...and it stays so over several more rule evaluations (nothing flaps in late).
    for _ in range(3):
        before = induced.last_evaluation("jobpulse.alerts")
        wait_for(
            "another rule evaluation",
            lambda: induced.last_evaluation("jobpulse.alerts") != before,  # noqa: B023
            10,
            every=0.2,
        )
        assert induced.firing() == EXPECTED_FIRING
    every_alert = {a for a, _, _ in EXPECTED_FIRING} | {"JobpulseTelemetryAbsent"}
    assert every_alert == set(alerts_gen.ALERT_ORDER), "the test covers every alert"
    rules = induced.api("rules")["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert set(health.values()) == {"ok"}, health


def _substitute(expr: str, **variables: str) -> str:
    for name, value in GRAFANA.items():
        expr = expr.replace(name, value)
    for name, value in variables.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


def test_every_overview_query_parses_and_returns_data(induced: Prometheus) -> None:
    wait_for("the latched last success", lambda: induced.query(alerts_gen.LATCHED), 30)
    model = load(OVERVIEW)
    empty = []
    for title, target in targets(model):
        expr = _substitute(target["expr"], service=".*", queue=".*", job=".*")
        if not induced.query(expr):
            empty.append((title, expr))
    assert not empty, empty
    for annotation in model["annotations"]["list"]:
        assert induced.query(annotation["expr"]), "firing alerts feed the annotation"
    # the panels show the situations the driver made
    by_reason = induced.query(
        _substitute(
            "sum by (jobpulse_stall_reason) (jobpulse_job_stalled) > 0", service=".*", queue=".*"
        )
    )
    assert {s["metric"]["jobpulse_stall_reason"] for s in by_reason} == {
        "heartbeat_timeout", "max_runtime", "cancel_ignored"
    }  # fmt: skip


def test_variables_list_the_services_queues_and_jobs(induced: Prometheus) -> None:
    from .promql import label_values

    for path in (OVERVIEW, JOB):
        variables = {v["name"]: v for v in load(path)["templating"]["list"]}
        values = {}
        for name in ("service", "queue", "job"):
            selector, label = label_values(variables[name]["query"])
            match = _substitute(selector or "", service=".*", queue=".*")
            values[name] = set(induced.api(f"label/{label}/values", **{"match[]": match}))
        assert SCRAPE_JOB in values["service"]
        assert {"fast", "dead", "growing", "slow"} <= values["queue"]
        assert set(JOBS) <= values["job"]


def test_every_drilldown_query_parses_and_returns_data_for_the_right_job(
    induced: Prometheus,
) -> None:
    model = load(JOB)
    results: dict[tuple[str, str], dict[str, bool]] = {}
    for title, target in targets(model):
        per_job = {}
        for job in JOBS:
            expr = _substitute(target["expr"], service=SCRAPE_JOB, queue=".*", job=job)
            per_job[job] = bool(induced.query(expr))
        results[(title, target["refId"])] = per_job
    never = [key for key, per_job in results.items() if not any(per_job.values())]
    assert not never, f"queries that return nothing for any job: {never}"
    # The stalled-runs table shows the stuck jobs, and only them.
    stalled = {job for job, has in results[("Stalled runs", "A")].items() if has}
    assert stalled == {"e2e.stuck_heartbeat", "e2e.stuck_runtime", "e2e.zombie"}
    # A healthy job has its success ratio, durations and dependencies...
    healthy_panels = (
        ("Final success ratio (1h)", "A"),
        ("Duration p50 / p95 / p99, with exemplars", "B"),
        ("Queue wait p95", "A"),
        ("Dependency timeouts and errors", "A"),
    )
    for key in healthy_panels:
        assert results[key]["e2e.healthy"], key
    # ...and the failing one its errors by type.
    assert results[("Errors by type", "A")]["e2e.flaky"]
    assert not results[("Errors by type", "A")]["e2e.healthy"]
