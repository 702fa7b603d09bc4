"""Wrong configuration fails at instrument() with a message naming the setting and valid values."""

from __future__ import annotations

import pytest

import jobpulse
from jobpulse._config import load_settings


@pytest.mark.parametrize(
    ("options", "env", "needle"),
    [
        ({"enforce": "maybe"}, {}, "instrument(enforce=...)"),
        ({}, {"JOBPULSE_ENFORCE": "maybe"}, "JOBPULSE_ENFORCE"),
        ({"heartbeat_interval": -1}, {}, "positive number of seconds"),
        ({}, {"JOBPULSE_HEARTBEAT_INTERVAL": "soon"}, "JOBPULSE_HEARTBEAT_INTERVAL"),
        ({"budgets": {"tasks.*": {"max_runtime": "long"}}}, {}, "max_runtime"),
        ({}, {"JOBPULSE_BUDGETS": "{not json"}, "JOBPULSE_BUDGETS"),
        ({"adapters": ["celery", "sidekiq"]}, {}, "'sidekiq'"),
        ({"log_format": "xml"}, {}, "'json', 'text'"),
        ({"configure_otel": "sometimes"}, {}, "configure_otel"),
        ({"prometheus_port": 70000}, {}, "0 to 65535"),
        ({"enforec": True}, {}, "valid settings"),
    ],
)
def test_bad_settings_name_the_setting_and_valid_values(
    options: dict[str, object], env: dict[str, str], needle: str
) -> None:
    with pytest.raises(jobpulse.ConfigurationError) as info:
        load_settings(options, env)
    assert needle in str(info.value)
    assert "valid" in str(info.value)


def test_bad_setting_fails_instrument_and_leaves_nothing_installed() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        jobpulse.instrument(heartbeat_interval=0)
    from jobpulse import _runtime

    assert _runtime.get() is None


def test_environment_is_read_and_keywords_win() -> None:
    env = {
        "JOBPULSE_ENFORCE": "true",
        "JOBPULSE_HEARTBEAT_INTERVAL": "2.5",
        "JOBPULSE_BUDGETS": '{"tasks.*": {"max_runtime": 60, "max_attempts": 3}}',
        "JOBPULSE_ASYNCIO_JOBS": "app.workers.*, app.jobs.*",
        "JOBPULSE_DEFAULT_BUDGET": '{"heartbeat_timeout": 120}',
    }
    settings = load_settings({"heartbeat_interval": 5}, env)
    assert settings.enforce is True
    assert settings.heartbeat_interval == 5.0
    assert settings.asyncio_jobs == ("app.workers.*", "app.jobs.*")
    assert settings.budget_for("tasks.export") == jobpulse.Budget(max_runtime=60, max_attempts=3)
    assert settings.budget_for("other") is None
    assert settings.default_budget == jobpulse.Budget(heartbeat_timeout=120)


def test_exact_budget_name_beats_a_pattern() -> None:
    settings = load_settings(
        {
            "budgets": {
                "tasks.*": jobpulse.Budget(max_runtime=60),
                "tasks.big": {"max_runtime": 600},
            }
        },
        {},
    )
    assert settings.budget_for("tasks.big") == jobpulse.Budget(max_runtime=600)
    assert settings.budget_for("tasks.small") == jobpulse.Budget(max_runtime=60)


def test_budget_and_decorator_values_are_checked_at_definition() -> None:
    with pytest.raises(ValueError, match="max_runtime"):
        jobpulse.Budget(max_runtime=0)
    with pytest.raises(ValueError, match="max_attempts"):
        jobpulse.Budget(max_attempts=1.5)
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        jobpulse.job(heartbeat_timeout=-3)
    with pytest.raises(ValueError, match="timeout"):
        jobpulse.dependency("x", timeout=0)


def test_grpc_protocol_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(jobpulse.ConfigurationError, match="http/protobuf"):
        jobpulse.instrument(configure_otel=True)


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    from jobpulse import _runtime

    jobpulse.instrument(configure_otel=False)
    first = _runtime.get()
    jobpulse.instrument(configure_otel=False, enforce=True)
    assert _runtime.get() is first
    jobpulse.uninstrument()
    jobpulse.uninstrument()
    assert _runtime.get() is None


def test_explicitly_requested_missing_adapter_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobpulse import adapters

    monkeypatch.setitem(adapters.REGISTRY, "rq", "jobpulse.adapters.does_not_exist")
    with pytest.raises(jobpulse.ConfigurationError, match="rq adapter"):
        jobpulse.instrument(configure_otel=False, adapters=["rq"])
