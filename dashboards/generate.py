"""Render jobpulse's Grafana dashboards with grafana-foundation-sdk (Grafana 11.6 flavour).

    python -m dashboards.generate            # rewrite dashboards/json/ (run from the repo root)
    python -m dashboards.generate --check    # exit 1 when the committed files are stale
    scripts/generate-assets                  # rules and dashboards together

Two dashboards, both with the variables data source, service (the ``job``
label, OTel ``service.name``), queue and job:

* ``jobpulse-overview``: every job at a glance.
* ``jobpulse-job``: one job, plus the stalled-runs table, exemplars from the
  duration panel to traces, and trace search links to Jaeger and Tempo.

Every query uses only the telemetry contract's metrics and the recording rule
``jobpulse:last_success_timestamp_seconds:latched`` (alerts/rules/); the
selector and the links come from alerts/config.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.generate import LATCHED, ROOT, load_config
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

OUT_DIR = ROOT / "dashboards" / "json"
OVERVIEW_FILE = "jobpulse-overview.json"
JOB_FILE = "jobpulse-job.json"

DS = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
RUNS = "jobpulse_job_runs_total"
DEP_DURATION = "jobpulse_dependency_duration_seconds"

SUCCESS = 'jobpulse_outcome="success"'
FINAL = 'jobpulse_action!="retry"'
RETRY = 'jobpulse_action="retry"'
QUARANTINE = 'jobpulse_action="quarantine"'

#: Grafana's own variables, and what the end-to-end test substitutes for them.
GRAFANA_VARIABLES = ("$__rate_interval", "$__range", "$__interval")


@dataclass
class Filters:
    """The label matchers each kind of series is filtered with."""

    selector: str

    def _join(self, *parts: str) -> str:
        return ", ".join(p for p in (self.selector.strip(), *parts) if p)

    def job(self, *extra: str) -> str:
        """A job's series (runs, durations, gauges)."""
        return self._join(
            'job=~"$service"', 'jobpulse_queue_name=~"$queue"', 'jobpulse_job_name=~"$job"', *extra
        )

    def runs(self, *extra: str) -> str:
        """``jobpulse_job_runs_total`` of the selected jobs."""
        return f"{RUNS}{{{self.job(*extra)}}}"

    @property
    def latched(self) -> str:
        """The recording rule's output (already filtered by the selector when recorded)."""
        return 'job=~"$service", jobpulse_queue_name=~"$queue", jobpulse_job_name=~"$job"'

    @property
    def queue(self) -> str:
        """Queue samples come from one sampler, often another service than the workers."""
        return self._join('jobpulse_queue_name=~"$queue"')

    @property
    def service(self) -> str:
        """Per-process series without job labels (dependencies, telemetry errors)."""
        return self._join('job=~"$service"')


def _query(expr: str, legend: str = "", ref: str = "A") -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    return q


def _instant_table(expr: str, ref: str) -> prom.Dataquery:
    return (
        prom.Dataquery()
        .expr(expr)
        .ref_id(ref)
        .datasource(DS)
        .instant()
        .format(prom_m.PromQueryFormat.TABLE)
    )


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in steps])
    )


def _stat(
    title: str, expr: str, unit: str, description: str, *steps: tuple[float | None, str]
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(_query(expr))
        .unit(unit)
        .height(4)
        .span(4)
        .graph_mode(common_m.BigValueGraphMode.AREA)
        .color_mode(common_m.BigValueColorMode.BACKGROUND)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    if steps:
        panel = panel.thresholds(_thresholds(*steps))
    return panel


def _series(
    title: str,
    description: str,
    targets: list[prom.Dataquery],
    unit: str = "short",
    *,
    span: int = 12,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(8)
        .span(span)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common_m.LegendDisplayMode.TABLE)
            .placement(common_m.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(common_m.GraphDrawStyle.BARS).fill_opacity(60)
    for i, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + i)))
    return panel


def _variables(board: dash.Dashboard, s: str, *, multi: bool) -> dash.Dashboard:
    """data source, service, queue, job; ``multi=False`` (the drill-down) makes service and
    job single-valued, so trace links get one service and one job."""
    sel = f"{{{s}}}" if s else ""
    in_queue = ", ".join(p for p in (s, 'job=~"$service"', 'jobpulse_queue_name=~"$queue"') if p)
    refresh = dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED
    queue_names = ", ".join(p for p in (f'__name__=~"{RUNS}|jobpulse_queue_depth"', s) if p)
    board = board.with_variable(
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    service = (
        dash.QueryVariable("service")
        .label("Service")
        .description("The OTel service.name of the workers (the Prometheus job label).")
        .datasource(DS)
        .query(f"label_values({RUNS}{sel}, job)")
        .refresh(refresh)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        service = service.multi(True).include_all(True).all_value(".*")
    board = board.with_variable(service)
    board = board.with_variable(
        dash.QueryVariable("queue")
        .label("Queue")
        .description("Queues with runs or with a depth sample; in-process jobs have none.")
        .datasource(DS)
        .query(f"label_values({{{queue_names}}}, jobpulse_queue_name)")
        .regex("/.+/")
        .refresh(refresh)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    job = (
        dash.QueryVariable("job")
        .label("Job")
        .description("jobpulse.job.name: the Celery task, the RQ function, the @jobpulse.job name.")
        .datasource(DS)
        .query(f"label_values({RUNS}{{{in_queue}}}, jobpulse_job_name)")
        .refresh(refresh)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        job = job.multi(True).include_all(True).all_value(".*")
    return board.with_variable(job)


def _base(cfg: Mapping[str, Any], uid: str, title: str, description: str) -> dash.Dashboard:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["jobpulse"])
        .editable()
        .time(cfg["dashboards"]["time_from"], "now")
        .refresh(cfg["dashboards"]["refresh"])
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
    )
    return board.annotation(
        dash.AnnotationQuery()
        .name("jobpulse alerts")
        .datasource(DS)
        .enable(True)
        .icon_color("red")
        .expr('ALERTS{alertname=~"Jobpulse.*", alertstate="firing"}')
    )


def _success_ratio(f: Filters, by: str, window: str) -> str:
    return (
        f"sum by ({by}) (rate({f.runs(SUCCESS)}[{window}]))\n"
        f"/\nsum by ({by}) (rate({f.runs(FINAL)}[{window}]))"
    )


def _quantile(q: float, metric: str, sel: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"(rate({metric}_bucket{{{sel}}}[$__rate_interval])))"
    )


def _rows_common(board: dash.Dashboard, f: Filters, *, per: str, exemplars: bool) -> dash.Dashboard:
    """The panels both dashboards share; ``per`` is the grouping label of job series."""
    legend = "{{" + per + "}}"
    board = board.with_row(dash.Row("Runs"))
    board = board.with_panel(
        _series(
            "Final success ratio (1h)",
            "Successes over final runs (runs not retried), over the last hour.",
            [_query(_success_ratio(f, per, "1h"), legend)],
            "percentunit",
        )
        .min(0)
        .max(1)
    )
    board = board.with_panel(
        _series(
            "Time since last success",
            "Latched across worker restarts by the recording rule "
            "jobpulse:last_success_timestamp_seconds:latched.",
            [_query(f"time() - max by ({per}) ({LATCHED}{{{f.latched}}})", legend)],
            "s",
        )
    )
    board = board.with_panel(
        _series(
            "Runs by outcome and action",
            "Finished attempts per second: outcome (what happened) and action (what next).",
            [
                _query(
                    "sum by (jobpulse_outcome, jobpulse_action) "
                    f"(rate({RUNS}{{{f.job()}}}[$__rate_interval]))",
                    "{{jobpulse_outcome}} / {{jobpulse_action}}",
                )
            ],
            "suffix: runs/s",
            stacked=True,
        )
    )
    p50 = _query(_quantile(0.5, "jobpulse_job_duration_seconds", f.job(), per), f"p50 {legend}")
    p95 = _query(_quantile(0.95, "jobpulse_job_duration_seconds", f.job(), per), f"p95 {legend}")
    targets = [p50, p95]
    if exemplars:
        p99 = _query(
            _quantile(0.99, "jobpulse_job_duration_seconds", f.job(), per), f"p99 {legend}"
        )
        targets = [p50.exemplar(True), p95.exemplar(True), p99.exemplar(True)]
    board = board.with_panel(
        _series(
            "Duration p50 / p95" + (" / p99, with exemplars" if exemplars else ""),
            "Run duration, one attempt start to end."
            + (
                " Exemplar dots link to the run's trace (in-process, solo and thread-pool "
                "runs; a prefork parent records no exemplars)."
                if exemplars
                else ""
            ),
            targets,
            "s",
        )
    )
    board = board.with_row(dash.Row("In flight and stuck"))
    board = board.with_panel(
        _series(
            "In flight",
            "Runs in progress, and the workers' capacity on the queues (saturation).",
            [
                _query(f"sum by ({per}) (jobpulse_job_active{{{f.job()}}})", legend),
                _query(
                    f"sum by (jobpulse_queue_name) (jobpulse_worker_capacity{{{f.queue}}})",
                    "capacity {{jobpulse_queue_name}}",
                ),
            ],
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Stalled runs by reason",
            "Active runs past a budget, by worst reason (heartbeat_timeout, max_runtime, "
            "cancel_ignored), and zombies (cancel not honoured after the grace period).",
            [
                _query(
                    f"sum by ({per}, jobpulse_stall_reason) (jobpulse_job_stalled{{{f.job()}}})",
                    legend + " {{jobpulse_stall_reason}}",
                ),
                _query(f"sum by ({per}) (jobpulse_job_zombies{{{f.job()}}})", "zombies " + legend),
            ],
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Heartbeat age and oldest run",
            "Largest silence since a heartbeat, and the oldest active run's elapsed time.",
            [
                _query(
                    f"max by ({per}) (jobpulse_job_heartbeat_age_seconds{{{f.job()}}})",
                    "silence " + legend,
                ),
                _query(
                    f"max by ({per}) (jobpulse_job_active_age_seconds{{{f.job()}}})",
                    "oldest " + legend,
                ),
            ],
            "s",
            span=8,
        )
    )
    board = board.with_row(dash.Row("Queues"))
    board = board.with_panel(
        _series(
            "Queue depth",
            "Messages waiting, from the queue sampler (jobpulse probe).",
            [
                _query(
                    f"max by (jobpulse_queue_name) (jobpulse_queue_depth{{{f.queue}}})",
                    "{{jobpulse_queue_name}}",
                )
            ],
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Oldest message age",
            "How long the oldest waiting message has waited.",
            [
                _query(
                    "max by (jobpulse_queue_name) "
                    f"(jobpulse_queue_oldest_age_seconds{{{f.queue}}})",
                    "{{jobpulse_queue_name}}",
                )
            ],
            "s",
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Queue wait p95",
            "From when a run became due (enqueue or ETA) to its start.",
            [_query(_quantile(0.95, "jobpulse_job_queue_wait_seconds", f.job(), per), legend)],
            "s",
            span=8,
        )
    )
    board = board.with_row(dash.Row("Retries and errors"))
    board = board.with_panel(
        _series(
            "Retries and quarantined",
            "Attempts that ended in a retry, and runs set aside as poison.",
            [
                _query(
                    f"sum by ({per}) (increase({f.runs(RETRY)}[$__rate_interval]))",
                    "retry " + legend,
                ),
                _query(
                    f"sum by ({per}) (increase({f.runs(QUARANTINE)}[$__rate_interval]))",
                    "quarantine " + legend,
                ),
            ],
            bars=True,
        )
    )
    board = board.with_panel(
        _series(
            "Errors by type",
            "Failed attempts by error.type (at most 50 types per job, then _OTHER).",
            [
                _query(
                    f"sum by ({per}, error_type) "
                    f"(rate(jobpulse_job_errors_total{{{f.job()}}}[$__rate_interval]))",
                    legend + " {{error_type}}",
                )
            ],
            "suffix: errors/s",
            stacked=True,
        )
    )
    board = board.with_row(dash.Row("Dependencies"))
    dep = f.service
    board = board.with_panel(
        _series(
            "Dependency latency p95",
            "Calls out of runs (HTTP, SQL, locks), by dependency name.",
            [
                _query(
                    _quantile(0.95, DEP_DURATION, dep, "jobpulse_dependency_name"),
                    "{{jobpulse_dependency_name}}",
                )
            ],
            "s",
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Dependency timeouts and errors",
            "Calls that ran past their timeout (even if they returned) or failed.",
            [
                _query(
                    "sum by (jobpulse_dependency_name, jobpulse_dependency_outcome) "
                    "(rate(jobpulse_dependency_duration_seconds_count{"
                    f'{dep}, jobpulse_dependency_outcome!="ok"}}[$__rate_interval]))',
                    "{{jobpulse_dependency_name}} {{jobpulse_dependency_outcome}}",
                )
            ],
            "suffix: calls/s",
            span=8,
        )
    )
    board = board.with_panel(
        _series(
            "Calls without a timeout",
            "Dependency calls made with no timeout: how a run hangs forever.",
            [
                _query(
                    "sum by (jobpulse_dependency_name) (increase("
                    f"jobpulse_dependency_unbounded_calls_total{{{dep}}}[$__rate_interval]))",
                    "{{jobpulse_dependency_name}}",
                )
            ],
            span=8,
            bars=True,
        )
    )
    board = board.with_row(dash.Row("jobpulse"))
    return board.with_panel(
        _series(
            "Telemetry errors",
            "Failures inside jobpulse that were swallowed so the job could go on, and spans or "
            "records dropped by a full export queue.",
            [
                _query(
                    "sum by (job, jobpulse_component) "
                    f"(increase(jobpulse_telemetry_errors_total{{{dep}}}[$__rate_interval]))",
                    "{{job}} {{jobpulse_component}}",
                )
            ],
            span=24,
            bars=True,
        )
    )


def _jobs_table(f: Filters) -> table.Panel:
    by = "jobpulse_job_name, jobpulse_queue_name"
    columns = [
        ("Success ratio (1h)", _success_ratio(f, by, "1h"), "percentunit"),
        ("Since last success", f"time() - max by ({by}) ({LATCHED}{{{f.latched}}})", "s"),
        ("Runs (1h)", f"sum by ({by}) (increase({RUNS}{{{f.job()}}}[1h]))", "short"),
        (
            "p95 duration (1h)",
            f"histogram_quantile(0.95, sum by ({by}, le) "
            f"(rate(jobpulse_job_duration_seconds_bucket{{{f.job()}}}[1h])))",
            "s",
        ),
        ("In flight", f"sum by ({by}) (jobpulse_job_active{{{f.job()}}})", "short"),
        ("Stalled", f"sum by ({by}) (jobpulse_job_stalled{{{f.job()}}})", "short"),
    ]
    panel = (
        table.Panel()
        .title("Jobs")
        .description("One row per job and queue. Click a job for its drill-down.")
        .datasource(DS)
        .height(9)
        .span(24)
        .with_transformation(dash_m.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "jobpulse_job_name": "Job",
                        "jobpulse_queue_name": "Queue",
                        **{f"Value #{chr(ord('A') + i)}": c[0] for i, c in enumerate(columns)},
                    },
                },
            )
        )
    )
    for i, (title, expr, unit) in enumerate(columns):
        ref = chr(ord("A") + i)
        panel = panel.with_target(_instant_table(expr, ref))
        panel = panel.override_by_name(
            title, [dash_m.DynamicConfigValue(id_val="unit", value=unit)]
        )
    return panel


def _stalled_table(f: Filters) -> table.Panel:
    by = "instance, jobpulse_queue_name"
    stalled = f"sum by ({by}, jobpulse_stall_reason) (jobpulse_job_stalled{{{f.job()}}}) > 0"
    only_stalled = f"and on ({by}) (sum by ({by}) (jobpulse_job_stalled{{{f.job()}}}) > 0)"
    return (
        table.Panel()
        .title("Stalled runs")
        .description(
            "Runs of this job past a budget right now, per worker process (instance = "
            "service.instance.id): the reason, how long the worker's stalled runs have been "
            "silent, and its oldest run's elapsed time. The worker logs a stall line with the "
            "step, the dependency waited on and the stack (see docs/runbooks/stuck-job.md)."
        )
        .datasource(DS)
        .height(8)
        .span(24)
        .with_target(_instant_table(stalled, "A"))
        .with_target(
            _instant_table(
                f"max by ({by}) (jobpulse_job_heartbeat_age_seconds{{{f.job()}}})\n{only_stalled}",
                "B",
            )
        )
        .with_target(
            _instant_table(
                f"max by ({by}) (jobpulse_job_active_age_seconds{{{f.job()}}})\n{only_stalled}",
                "C",
            )
        )
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="joinByField", options={"byField": "instance", "mode": "outer"}
            )
        )
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {
                        "Time": True,
                        "Time 1": True,
                        "Time 2": True,
                        "Time 3": True,
                        "jobpulse_queue_name 2": True,
                        "jobpulse_queue_name 3": True,
                    },
                    "renameByName": {
                        "instance": "Worker (instance)",
                        "jobpulse_queue_name 1": "Queue",
                        "jobpulse_queue_name": "Queue",
                        "jobpulse_stall_reason": "Reason",
                        "Value #A": "Stalled runs",
                        "Value #B": "Silent for",
                        "Value #C": "Oldest run",
                    },
                },
            )
        )
        .override_by_name("Silent for", [dash_m.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("Oldest run", [dash_m.DynamicConfigValue(id_val="unit", value="s")])
    )


def _trace_links(cfg: Mapping[str, Any]) -> list[dash.DashboardLink]:
    jaeger = str(cfg["links"]["jaeger_url"]).rstrip("/")
    tempo_uid = str(cfg["links"]["tempo_datasource_uid"])
    failed = urllib.parse.quote('{"error":"true"}', safe="")
    job_token = "JOBPULSE_JOB_NAME"

    def explore(traceql: str) -> str:
        panes = {
            "jobpulse": {
                "datasource": tempo_uid,
                "queries": [
                    {
                        "refId": "A",
                        "datasource": {"type": "tempo", "uid": tempo_uid},
                        "queryType": "traceql",
                        "query": traceql,
                        "limit": 50,
                    }
                ],
                "range": {"from": "now-6h", "to": "now"},
            }
        }
        encoded = urllib.parse.quote(json.dumps(panes, separators=(",", ":")), safe="")
        return "/explore?schemaVersion=1&orgId=1&panes=" + encoded.replace(
            job_token, "${job:percentencode}"
        )

    def link(title: str, url: str, tooltip: str) -> dash.DashboardLink:
        return (
            dash.DashboardLink(title)
            .type(dash_m.DashboardLinkType.LINK)
            .url(url)
            .tooltip(tooltip)
            .icon("external link")
            .target_blank(True)
        )

    return [
        link(
            "Runs in Jaeger",
            f"{jaeger}/search?service=${{service}}&operation=${{job:percentencode}}&limit=50",
            "Run spans of this job (a run span is named after its job).",
        ),
        link(
            "Failed runs in Jaeger",
            f"{jaeger}/search?service=${{service}}&operation=${{job:percentencode}}"
            f"&tags={failed}&limit=50",
            "Runs whose outcome was error, timeout or lost (span status ERROR).",
        ),
        link(
            "Runs in Tempo",
            explore(f'{{ span.jobpulse.job.name = "{job_token}" }}'),
            "TraceQL search in Grafana Explore on the Tempo data source.",
        ),
        link(
            "Stalled or failed runs in Tempo",
            explore(
                f'{{ span.jobpulse.job.name = "{job_token}" && '
                '(span.jobpulse.outcome != "success" || event:name = "jobpulse.stalled") }'
            ),
            "Runs that did not succeed, or that the watchdog marked stalled.",
        ),
    ]


def overview(cfg: Mapping[str, Any]) -> dash.Dashboard:
    f = Filters(cfg["selector"])
    job_uid = cfg["dashboards"]["job_uid"]
    board = _base(
        cfg,
        cfg["dashboards"]["overview_uid"],
        "jobpulse / Overview",
        "Every background job: success, time since last success, runs, duration, in flight, "
        "stalled, queues, retries, dependencies. Generated by dashboards/generate.py.",
    )
    board = _variables(board, cfg["selector"], multi=True)
    board = board.link(
        dash.DashboardLink("Job drill-down")
        .type(dash_m.DashboardLinkType.DASHBOARDS)
        .tags(["jobpulse"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )
    board = board.with_row(dash.Row("Health"))
    board = board.with_panel(
        _stat(
            "Final success ratio",
            f"sum(increase({f.runs(SUCCESS)}[$__range]))\n/\n"
            f"sum(increase({f.runs(FINAL)}[$__range]))",
            "percentunit",
            "Successes over final runs (not retried), over the dashboard's time range.",
            (None, "red"),
            (0.9, "orange"),
            (0.99, "green"),
        )
    )
    board = board.with_panel(
        _stat(
            "In flight",
            f"sum(jobpulse_job_active{{{f.job()}}})",
            "short",
            "Runs in progress now.",
        )
    )
    board = board.with_panel(
        _stat(
            "Stalled runs",
            f"sum(jobpulse_job_stalled{{{f.job()}}})",
            "short",
            "Active runs past their heartbeat timeout or max runtime, or ignoring a cancel.",
            (None, "green"),
            (1, "red"),
        )
    )
    board = board.with_panel(
        _stat(
            "Zombie runs",
            f"sum(jobpulse_job_zombies{{{f.job()}}})",
            "short",
            "Runs asked to stop that are still running after the grace period.",
            (None, "green"),
            (1, "red"),
        )
    )
    board = board.with_panel(
        _stat(
            "Backlog",
            f"sum(jobpulse_queue_depth{{{f.queue}}})",
            "short",
            "Messages waiting in the selected queues.",
        )
    )
    board = board.with_panel(
        _stat(
            "Oldest message",
            f"max(jobpulse_queue_oldest_age_seconds{{{f.queue}}})",
            "s",
            "Age of the oldest waiting message across the selected queues.",
            (None, "green"),
            (600, "orange"),
            (1800, "red"),
        )
    )
    board = board.with_row(dash.Row("Per job"))
    table_panel = _jobs_table(f).override_by_name(
        "Job",
        [
            dash_m.DynamicConfigValue(
                id_val="links",
                value=[
                    {
                        "title": "Job drill-down",
                        "url": f"/d/{job_uid}/{job_uid}?${{__url_time_range}}"
                        "&${service:queryparam}&var-job=${__value.raw}"
                        "&var-queue=${__data.fields.Queue}",
                    }
                ],
            )
        ],
    )
    board = board.with_panel(table_panel)
    return _rows_common(board, f, per="jobpulse_job_name", exemplars=False)


def job_dashboard(cfg: Mapping[str, Any]) -> dash.Dashboard:
    f = Filters(cfg["selector"])
    board = _base(
        cfg,
        cfg["dashboards"]["job_uid"],
        "jobpulse / Job",
        "One background job in depth: the overview's panels for one job, the stalled-runs "
        "table, exemplars from duration to traces, and trace search in Jaeger and Tempo. "
        "Generated by dashboards/generate.py.",
    )
    board = _variables(board, cfg["selector"], multi=False)
    overview_uid = cfg["dashboards"]["overview_uid"]
    board = board.link(
        dash.DashboardLink("Overview")
        .type(dash_m.DashboardLinkType.LINK)
        .url(f"/d/{overview_uid}/{overview_uid}")
        .icon("dashboard")
        .include_vars(True)
        .keep_time(True)
    )
    for link in _trace_links(cfg):
        board = board.link(link)
    board = board.with_row(dash.Row("Health"))
    board = board.with_panel(
        _stat(
            "Final success ratio",
            f"sum(increase({f.runs(SUCCESS)}[$__range]))\n/\n"
            f"sum(increase({f.runs(FINAL)}[$__range]))",
            "percentunit",
            "Successes over final runs (not retried), over the dashboard's time range.",
            (None, "red"),
            (0.9, "orange"),
            (0.99, "green"),
        )
    )
    board = board.with_panel(
        _stat(
            "Since last success",
            f"time() - max({LATCHED}{{{f.latched}}})",
            "s",
            "Latched across worker restarts.",
        )
    )
    board = board.with_panel(
        _stat(
            "Runs",
            f"sum(increase({RUNS}{{{f.job()}}}[$__range]))",
            "short",
            "Finished attempts over the dashboard's time range.",
        )
    )
    board = board.with_panel(
        _stat(
            "p95 duration",
            "histogram_quantile(0.95, sum by (le) "
            f"(increase(jobpulse_job_duration_seconds_bucket{{{f.job()}}}[$__range])))",
            "s",
            "Over the dashboard's time range.",
        )
    )
    board = board.with_panel(
        _stat("In flight", f"sum(jobpulse_job_active{{{f.job()}}})", "short", "Runs now.")
    )
    board = board.with_panel(
        _stat(
            "Stalled runs",
            f"sum(jobpulse_job_stalled{{{f.job()}}})",
            "short",
            "Active runs past a budget now.",
            (None, "green"),
            (1, "red"),
        )
    )
    board = board.with_row(dash.Row("Stuck now"))
    board = board.with_panel(_stalled_table(f))
    return _rows_common(board, f, per="jobpulse_job_name", exemplars=True)


#: Fields of a Prometheus annotation query the SDK has no builder method for.
_ALERT_ANNOTATION = {
    "titleFormat": "{{alertname}}",
    "textFormat": "{{jobpulse_job_name}} {{jobpulse_queue_name}} {{jobpulse_dependency_name}}",
    "step": "60s",
}


def _finish(model: dict[str, Any]) -> dict[str, Any]:
    """Panel ids in order, and the annotation fields the SDK cannot set."""
    for annotation in model.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            annotation.update(_ALERT_ANNOTATION)
    next_id = 1
    for panel in model.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []) or []:
            inner["id"] = next_id
            next_id += 1
    return model


def to_json(board: dash.Dashboard) -> str:
    model = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return json.dumps(_finish(model), indent=2, sort_keys=True) + "\n"


def render(cfg: Mapping[str, Any]) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {OVERVIEW_FILE: to_json(overview(cfg)), JOB_FILE: to_json(job_dashboard(cfg))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    files = render(load_config(args.config))
    if args.check:
        bad = [
            name
            for name, text in files.items()
            if not (args.out / name).is_file()
            or (args.out / name).read_text(encoding="utf-8") != text
        ]
        for name in bad:
            print(f"stale: {args.out / name} (run scripts/generate-assets)", file=sys.stderr)
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
