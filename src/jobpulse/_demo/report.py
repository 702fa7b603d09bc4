"""What the demo prints: per job, what an operator needs, read from jobpulse's own metrics."""

from __future__ import annotations

import datetime as _dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from rich.table import Table

from .. import _names as n
from .._registry import Registry


@dataclass
class JobView:
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_success: float | None = None
    buckets: list[int] = field(default_factory=list)
    bounds: list[float] = field(default_factory=list)
    in_flight: int = 0
    stalled: int = 0
    waiting_on: str = ""
    peak_stalled: int = 0


def quantile(q: float, bounds: list[float], counts: list[int]) -> float | None:
    """Prometheus-style histogram_quantile: linear interpolation inside the bucket."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for i, count in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if seen + count >= rank and count:
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return bounds[-1]


class Report:
    """Reads the metrics jobpulse exported (an in-memory reader beside the real exporters)."""

    def __init__(self, reader: InMemoryMetricReader, registry: Registry) -> None:
        self.reader = reader
        self.registry = registry
        self.peaks: dict[str, int] = defaultdict(int)
        self.waiting: dict[str, str] = {}

    def views(self) -> dict[str, JobView]:
        views: dict[str, JobView] = defaultdict(JobView)
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        job = (p.attributes or {}).get(n.JOB_NAME)
                        if job is None:
                            continue
                        self._fold(views[str(job)], metric.name, p)
        for run in self.registry.active():
            if run.dependency:
                self.waiting[run.job_name] = f"{run.dependency} ({run.elapsed:.0f}s)"
        for job, view in views.items():
            self.peaks[job] = max(self.peaks[job], view.stalled)
            view.peak_stalled = self.peaks[job]
            view.waiting_on = self.waiting.get(job, "") if view.peak_stalled else ""
        return dict(views)

    @staticmethod
    def _fold(view: JobView, name: str, p: Any) -> None:
        if name == n.M_RUNS[0]:
            key = (p.attributes[n.OUTCOME], p.attributes[n.ACTION])
            view.runs[key] = int(p.value)
        elif name == n.M_LAST_SUCCESS[0]:
            view.last_success = float(p.value)
        elif name == n.M_DURATION[0]:
            counts = list(p.bucket_counts)
            if view.buckets:
                counts = [a + b for a, b in zip(view.buckets, counts, strict=False)]
            view.buckets, view.bounds = counts, list(p.explicit_bounds)
        elif name == n.M_ACTIVE[0]:
            view.in_flight = int(p.value)
        elif name == n.M_STALLED[0]:
            view.stalled += int(p.value)

    def table(self, title: str) -> Table:
        table = Table(title=title, title_justify="left", expand=False)
        for column, justify in (
            ("job", "left"), ("runs by outcome/action", "left"), ("last success", "right"),
            ("p50", "right"), ("p95", "right"), ("in flight", "right"),
            ("stalled (peak)", "right"), ("waiting on", "left"),
        ):  # fmt: skip
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        now = time.time()
        for job, view in sorted(self.views().items()):
            runs = ", ".join(
                f"[{_style(o)}]{o}/{a}[/] {c}" for (o, a), c in sorted(view.runs.items()) if c
            )
            last = f"{now - view.last_success:.0f}s ago" if view.last_success else "[red]never[/]"
            p50 = quantile(0.5, view.bounds, view.buckets)
            p95 = quantile(0.95, view.bounds, view.buckets)
            stalled = (
                f"[yellow]{view.stalled}[/] ({view.peak_stalled})" if view.peak_stalled else "0"
            )
            table.add_row(
                job, runs or "-", last, _secs(p50), _secs(p95), str(view.in_flight), stalled,
                view.waiting_on or "-",
            )  # fmt: skip
        return table


def _style(outcome: str) -> str:
    return {"success": "green", "error": "red", "timeout": "magenta", "lost": "red"}.get(
        outcome, "yellow"
    )


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%H:%M:%S")
