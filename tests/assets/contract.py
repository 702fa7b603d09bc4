"""The telemetry contract's Prometheus names, as the shipped assets may use them.

Copied from the contract's Metrics table (``../shared/telemetry-contract.md``,
``docs/telemetry.md``); ``test_contract_names_match_the_core`` derives the same
names from ``jobpulse._names`` so the two cannot drift apart silently.
"""

from __future__ import annotations

#: Prometheus metric name -> (OTel name, kind)
METRICS: dict[str, tuple[str, str]] = {
    "jobpulse_job_runs_total": ("jobpulse.job.runs", "counter"),
    "jobpulse_job_errors_total": ("jobpulse.job.errors", "counter"),
    "jobpulse_job_duration_seconds": ("jobpulse.job.duration", "histogram"),
    "jobpulse_job_queue_wait_seconds": ("jobpulse.job.queue.wait", "histogram"),
    "jobpulse_job_active": ("jobpulse.job.active", "gauge"),
    "jobpulse_job_last_success_timestamp_seconds": ("jobpulse.job.last_success.timestamp", "gauge"),
    "jobpulse_job_heartbeat_age_seconds": ("jobpulse.job.heartbeat.age", "gauge"),
    "jobpulse_job_active_age_seconds": ("jobpulse.job.active.age", "gauge"),
    "jobpulse_job_stalled": ("jobpulse.job.stalled", "gauge"),
    "jobpulse_job_zombies": ("jobpulse.job.zombies", "gauge"),
    "jobpulse_worker_capacity": ("jobpulse.worker.capacity", "gauge"),
    "jobpulse_dependency_duration_seconds": ("jobpulse.dependency.duration", "histogram"),
    "jobpulse_dependency_unbounded_calls_total": ("jobpulse.dependency.unbounded_calls", "counter"),
    "jobpulse_queue_depth": ("jobpulse.queue.depth", "gauge"),
    "jobpulse_queue_oldest_age_seconds": ("jobpulse.queue.oldest.age", "gauge"),
    "jobpulse_telemetry_errors_total": ("jobpulse.telemetry.errors", "counter"),
}


def series_names() -> set[str]:
    """Every series name a query may select (histograms have three)."""
    names: set[str] = set()
    for name, (_otel, kind) in METRICS.items():
        if kind == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(name)
    return names


#: Label names: the contract's attributes with dots made underscores, `job`
#: (service.name) and `instance` (service.instance.id), and `le`.
LABELS = frozenset(
    {
        "jobpulse_job_name",
        "jobpulse_system",
        "jobpulse_queue_name",
        "jobpulse_outcome",
        "jobpulse_action",
        "jobpulse_stall_reason",
        "jobpulse_dependency_name",
        "jobpulse_dependency_outcome",
        "jobpulse_component",
        "error_type",
        "job",
        "instance",
        "le",
    }
)

#: Recording rules shipped in alerts/rules/ (their output may be queried too).
RECORDING_RULES = frozenset({"jobpulse:last_success_timestamp_seconds:latched"})

#: Prometheus' own series the assets may read (the alert annotations).
PROMETHEUS_BUILTINS = frozenset({"ALERTS"})
PROMETHEUS_LABELS = frozenset({"alertname", "alertstate", "__name__"})
