"""The Prometheus rules: generated from one config, valid, tested, and linked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from alerts import generate as gen

from . import contract, promql
from .conftest import ROOT, require_binary

JOB_ALERTS = {
    "JobpulseNoRecentSuccess",
    "JobpulseJobNeverSucceeded",
    "JobpulseHighFailureRatio",
    "JobpulseRunsStalled",
    "JobpulseRunsOverMaxRuntime",
    "JobpulseRetryStorm",
    "JobpulsePoisonRunsQuarantined",
    "JobpulseZombieRuns",
}
QUEUE_ALERTS = {
    "JobpulseBacklogNoProgress",
    "JobpulseBacklogGrowing",
    "JobpulseOldestMessageTooOld",
}


def _rules(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return _rules(gen.RULES_DIR / gen.ALERTS_FILE)


def all_rules() -> list[dict[str, Any]]:
    return _rules(gen.RULES_DIR / gen.RECORDING_FILE) + alert_rules()


def test_committed_rules_are_what_the_config_generates() -> None:
    """Edit alerts/config.yaml, then run scripts/generate-assets; never edit the output."""
    files = gen.render(gen.load_config())
    assert sorted(files) == sorted(p.name for p in gen.RULES_DIR.glob("*.yaml"))
    assert gen.stale(files, gen.RULES_DIR) == [], "run scripts/generate-assets"


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in gen.RULES_DIR.glob("*.yaml"))
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_cover_every_alert() -> None:
    """alerts/tests/ shows each alert firing where it should and silent where it should not."""
    promtool = require_binary("promtool")
    test_file = ROOT / "alerts" / "tests" / "jobpulse-rules.test.yaml"
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == set(gen.ALERT_ORDER), "every alert is shown firing"
    assert silent == set(gen.ALERT_ORDER), "every alert is shown staying silent"


def test_every_alert_the_issue_lists_exists_with_mixin_conventions() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert names == list(gen.ALERT_ORDER)
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Jobpulse(?:[A-Z][a-z]+)+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        ann = rule["annotations"]
        assert set(ann) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        assert "{{" not in ann["summary"], name
        assert ann["summary"].endswith("."), name
        assert "{{" in ann["description"], f"{name}: the description is templated"
        if name in JOB_ALERTS:
            for label in ("jobpulse_job_name", "jobpulse_queue_name", "job"):
                assert f"$labels.{label}" in ann["description"], (name, label)
        if name in QUEUE_ALERTS:
            assert "$labels.jobpulse_queue_name" in ann["description"], name
        assert "threshold" in ann["description"], f"{name}: the description names the threshold"


def test_descriptions_quote_the_configured_thresholds() -> None:
    cfg = gen.load_config()
    by_name = {r["alert"]: r["annotations"]["description"] for r in alert_rules()}
    checks = {
        "JobpulseNoRecentSuccess": cfg["alerts"]["JobpulseNoRecentSuccess"]["threshold"],
        "JobpulseOldestMessageTooOld": cfg["alerts"]["JobpulseOldestMessageTooOld"]["threshold"],
        "JobpulseBacklogNoProgress": cfg["alerts"]["JobpulseBacklogNoProgress"]["oldest_age"],
        "JobpulseHighFailureRatio": f"{cfg['alerts']['JobpulseHighFailureRatio']['ratio']:.0%}",
        "JobpulseRetryStorm": f"{cfg['alerts']['JobpulseRetryStorm']['ratio']:.0%}",
    }
    for name, text in checks.items():
        assert str(text) in by_name[name], (name, text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _slug(m.group(1))
        for m in re.finditer(r"^#{1,6}\s+(.+)$", path.read_text(encoding="utf-8"), re.M)
    }


def test_runbook_urls_resolve_to_their_section() -> None:
    page = gen.load_config()["links"]["runbook_page"]
    local = ROOT / urlparse(page).path.split("/blob/main/", 1)[1]
    anchors = _anchors(local)
    for rule in alert_rules():
        url = urlparse(rule["annotations"]["runbook_url"])
        assert url._replace(fragment="").geturl() == page
        assert url.fragment == rule["alert"].lower()
        assert url.fragment in anchors, f"{rule['alert']}: no section #{url.fragment} in {local}"


def test_dashboard_urls_point_at_shipped_dashboards_and_their_variables() -> None:
    import json

    boards = {}
    for path in (ROOT / "dashboards" / "json").glob("*.json"):
        model = json.loads(path.read_text(encoding="utf-8"))
        boards[model["uid"]] = {v["name"] for v in model["templating"]["list"]}
    grafana = gen.load_config()["links"]["grafana_url"]
    for rule in alert_rules():
        url = urlparse(rule["annotations"]["dashboard_url"].replace("{{", "").replace("}}", ""))
        assert f"{url.scheme}://{url.netloc}" == grafana
        uid = url.path.split("/")[2]
        assert uid in boards, rule["alert"]
        variables = {k.removeprefix("var-") for k in parse_qs(url.query)}
        assert variables <= boards[uid], (rule["alert"], variables - boards[uid])


def test_rules_use_only_contract_metrics_and_labels() -> None:
    allowed_metrics = contract.series_names() | contract.RECORDING_RULES
    allowed_labels = contract.LABELS
    for rule in all_rules():
        found = promql.names(rule["expr"])
        assert found.metrics <= allowed_metrics, (rule, found.metrics - allowed_metrics)
        assert found.labels <= allowed_labels, (rule, found.labels - allowed_labels)
        templated = re.findall(r"\$labels\.(\w+)", str(rule.get("annotations", {})))
        assert set(templated) <= allowed_labels, rule


def test_backlog_alert_does_not_need_any_worker_series() -> None:
    """`rate(...) == 0` returns nothing when every worker is dead; the rule must use
    `unless ... > 0` (the contract's form)."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "JobpulseBacklogNoProgress"]
    assert "unless on (jobpulse_system, jobpulse_queue_name)" in rule["expr"]
    assert "== 0" not in rule["expr"]


def test_latched_last_success_rule_follows_the_contract() -> None:
    (rule,) = _rules(gen.RULES_DIR / gen.RECORDING_FILE)
    assert rule["record"] == gen.LATCHED
    assert "jobpulse_job_last_success_timestamp_seconds" in rule["expr"]
    assert f"last_over_time({gen.LATCHED}[" in rule["expr"]


def test_config_overrides_render_valid_rules(tmp_path: Path) -> None:
    """Per-job and per-queue thresholds, a selector, extra group labels and a disabled
    alert: the output still passes promtool."""
    promtool = require_binary("promtool")
    cfg = gen.load_config(
        overrides={
            "selector": 'cluster="prod"',
            "group_labels": ["cluster"],
            "alerts": {
                "JobpulseNoRecentSuccess": {
                    "overrides": [
                        {"job": r"tasks\.hourly_.*", "threshold": "2h"},
                        {"job": r"tasks\..*", "threshold": "3h"},
                    ]
                },
                "JobpulseOldestMessageTooOld": {
                    "overrides": [{"queue": "reports", "threshold": "2h"}]
                },
                "JobpulseTelemetryErrors": {"enabled": False},
            },
        }
    )
    written = gen.write(gen.render(cfg), tmp_path)
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, written)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rules = _rules(tmp_path / gen.ALERTS_FILE)
    assert "JobpulseTelemetryErrors" not in {r["alert"] for r in rules}
    (nrs,) = [r for r in rules if r["alert"] == "JobpulseNoRecentSuccess"]
    assert nrs["expr"].count(" or\n") == 0
    assert nrs["expr"].count("\nor\n") == 2
    assert 'jobpulse_job_name=~"tasks\\\\.hourly_.*"' in nrs["expr"]
    assert "2h" in nrs["annotations"]["description"]
    assert "26h" in nrs["annotations"]["description"]
    for rule in rules + _rules(tmp_path / gen.RECORDING_FILE):
        if promql.names(rule["expr"]).metrics & contract.series_names():
            assert 'cluster="prod"' in rule["expr"], rule
            assert "by (cluster," in rule["expr"] or "on (cluster," in rule["expr"], rule


def test_bad_config_is_refused_with_the_valid_values() -> None:
    with pytest.raises(gen.ConfigError, match="unknown"):
        gen.load_config(overrides={"alerts": {"JobpulseTypo": {"severity": "warning"}}})
    with pytest.raises(gen.ConfigError, match="Prometheus duration"):
        gen.load_config(overrides={"alerts": {"JobpulseZombieRuns": {"for": "5 minutes"}}})
    with pytest.raises(gen.ConfigError, match="severity"):
        gen.load_config(overrides={"alerts": {"JobpulseZombieRuns": {"severity": "page"}}})
