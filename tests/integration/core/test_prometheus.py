"""instrument(prometheus_port=...) serves the contract's Prometheus names, and only once."""

from __future__ import annotations

import urllib.request

import pytest

import jobpulse
from jobpulse import _lifecycle, _otel

pytestmark = pytest.mark.integration


def scrape() -> str:
    port = _otel.prometheus_port()
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_metrics_endpoint_uses_contract_names_and_survives_reinstrument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for signal in ("TRACES", "METRICS", "LOGS"):
        monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", "none")
    for round_ in range(2):
        jobpulse.instrument(prometheus_port=0, prometheus_host="127.0.0.1", configure_otel=True)
        _lifecycle.count_run(
            "tasks.export", system="celery", queue="default", outcome="success", duration=0.2
        )
        text = scrape()
        runs = [
            line
            for line in text.splitlines()
            if line.startswith("jobpulse_job_runs_total{") and 'jobpulse_outcome="success"' in line
        ]
        assert len(runs) == 1, (round_, runs)
        assert 'jobpulse_job_name="tasks.export"' in runs[0]
        assert runs[0].endswith(" 1.0")
        assert "jobpulse_job_duration_seconds_bucket{" in text
        assert "jobpulse_job_last_success_timestamp_seconds{" in text
        jobpulse.uninstrument()
