"""The job metrics: instruments, their attribute sets, and the gauges' callbacks.

Attribute mappings are built once per (job, system, queue, ...) and reused:
building and validating attribute dicts is most of what a metric costs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from . import _names as n
from ._histograms import Histogram
from ._registry import STALL_REASONS, JobKey, Registry
from ._run import ALLOWED_PAIRS, Action, Outcome
from ._version import VERSION

Attrs = dict[str, Any]


def _histogram(meter: Any, spec: tuple[str, str, str]) -> Histogram:
    name, unit, desc = spec
    try:
        histogram = meter.create_histogram(
            name, unit=unit, description=desc,
            explicit_bucket_boundaries_advisory=list(n.DURATION_BUCKETS),
        )  # fmt: skip
    except TypeError:  # API older than 1.30: no advisory; a View can still set buckets
        histogram = meter.create_histogram(name, unit=unit, description=desc)
    return Histogram(histogram)  # attribute sets are the cached dicts below (_histograms)


class Instruments:
    """Every jobpulse instrument on one meter, plus the caps that bound cardinality."""

    def __init__(self, meter_provider: MeterProvider, registry: Registry) -> None:
        self.registry = registry
        meter = meter_provider.get_meter(n.INSTRUMENTATION_NAME, VERSION, schema_url=n.SCHEMA_URL)
        self._lock = threading.Lock()
        self._job_attrs: dict[JobKey, Attrs] = {}
        self._gauge_attrs: dict[JobKey, Attrs] = {}
        self._run_attrs: dict[tuple[JobKey, str, str], Attrs] = {}
        self._dur_attrs: dict[tuple[JobKey, str], Attrs] = {}
        self._err_attrs: dict[tuple[JobKey, str, str], Attrs] = {}
        self._error_types: dict[JobKey, set[str]] = {}
        self._dep_names: set[str] = set()
        self._dep_attrs: dict[tuple[str, str], Attrs] = {}
        # Run counts are kept here and observed at collection: a synchronous counter
        # costs a run about 7 us of SDK work (attribute hashing, view matching); the
        # exported data is the same cumulative monotonic sum.
        self._run_counts: dict[tuple[JobKey, str, str], int] = {}
        self._count_lock = threading.Lock()

        self.runs = meter.create_observable_counter(
            n.M_RUNS[0], [self._observe_runs], unit=n.M_RUNS[1], description=n.M_RUNS[2]
        )
        self.errors = meter.create_counter(
            n.M_ERRORS[0], unit=n.M_ERRORS[1], description=n.M_ERRORS[2]
        )
        self.duration = _histogram(meter, n.M_DURATION)
        self.queue_wait = _histogram(meter, n.M_QUEUE_WAIT)
        self.dep_duration = _histogram(meter, n.M_DEP_DURATION)
        self.dep_unbounded = meter.create_counter(
            n.M_DEP_UNBOUNDED[0], unit=n.M_DEP_UNBOUNDED[1], description=n.M_DEP_UNBOUNDED[2]
        )
        self.telemetry_errors = meter.create_counter(
            n.M_TELEMETRY_ERRORS[0],
            unit=n.M_TELEMETRY_ERRORS[1],
            description=n.M_TELEMETRY_ERRORS[2],
        )
        meter.create_observable_up_down_counter(
            n.M_ACTIVE[0], [self._observe_active], unit=n.M_ACTIVE[1], description=n.M_ACTIVE[2]
        )
        for spec, callback in (
            (n.M_LAST_SUCCESS, self._observe_last_success),
            (n.M_HEARTBEAT_AGE, self._observe_heartbeat_age),
            (n.M_ACTIVE_AGE, self._observe_active_age),
            (n.M_STALLED, self._observe_stalled),
            (n.M_ZOMBIES, self._observe_zombies),
            (n.M_CAPACITY, self._observe_capacity),
            (n.M_QUEUE_DEPTH, self._observe_queue_depth),
            (n.M_QUEUE_OLDEST_AGE, self._observe_queue_oldest_age),
        ):
            meter.create_observable_gauge(spec[0], [callback], unit=spec[1], description=spec[2])

    # -- attribute sets ----------------------------------------------------
    def job_attrs(self, key: JobKey) -> Attrs:
        attrs = self._job_attrs.get(key)
        if attrs is None:
            attrs = {n.JOB_NAME: key[0], n.SYSTEM: key[1], n.QUEUE_NAME: key[2]}
            with self._lock:
                first = key not in self._job_attrs
                self._job_attrs[key] = attrs
            if first:
                self._zero_series(key, attrs)
        return attrs

    def _zero_series(self, key: JobKey, attrs: Attrs) -> None:
        """Create every allowed (outcome, action) series at 0 when a job is first seen:
        Prometheus ignores a series' first sample in ``increase()``."""
        for outcome, actions in ALLOWED_PAIRS.items():
            for action in actions:
                self._count_run(key, outcome.value, action.value, 0)

    def _count_run(self, key: JobKey, outcome: str, action: str, increment: int) -> None:
        k = (key, outcome, action)
        if k not in self._run_attrs:
            self._run_attr(key, outcome, action)
        counts = self._run_counts
        with self._count_lock:
            counts[k] = counts.get(k, 0) + increment

    def _observe_runs(self, _: CallbackOptions) -> Iterable[Observation]:
        # An SDK keeps the first callback registered under a name: through a proxy
        # MeterProvider that can be an earlier Instruments'. Report the current ones.
        from . import _runtime

        rt = _runtime.get()
        source = rt.instruments if rt is not None else self
        with source._count_lock:
            counts = list(source._run_counts.items())
        return [Observation(value, source._run_attrs[k]) for k, value in counts]

    def _run_attr(self, key: JobKey, outcome: str, action: str) -> Attrs:
        k = (key, outcome, action)
        attrs = self._run_attrs.get(k)
        if attrs is None:
            attrs = {**self.job_attrs(key), n.OUTCOME: outcome, n.ACTION: action}
            self._run_attrs[k] = attrs
        return attrs

    def error_type(self, key: JobKey, error_type: str) -> str:
        seen = self._error_types.setdefault(key, set())
        if error_type in seen:
            return error_type
        with self._lock:
            if len(seen) >= n.MAX_ERROR_TYPES_PER_JOB:
                return n.OTHER
            seen.add(error_type)
        return error_type

    def dependency_name(self, name: str) -> str:
        if name in self._dep_names:
            return name
        with self._lock:
            if len(self._dep_names) >= n.MAX_DEPENDENCY_NAMES:
                return n.OTHER
            self._dep_names.add(name)
        return name

    # -- recording ---------------------------------------------------------
    def record_run(
        self,
        key: JobKey,
        outcome: Outcome,
        action: Action,
        error_type: str | None,
        duration: float | None,
    ) -> None:
        """Count one finished run (and its duration, unless the run was lost)."""
        ov = outcome._value_  # the plain string; ``.value`` is a slow descriptor
        self._count_run(key, ov, action._value_, 1)
        if duration is not None and outcome is not Outcome.LOST:
            dk = (key, ov)
            attrs = self._dur_attrs.get(dk)
            if attrs is None:
                attrs = self._dur_attrs[dk] = {**self.job_attrs(key), n.OUTCOME: ov}
            self.duration.record(duration, attrs)
        if error_type is not None:
            etype = self.error_type(key, error_type)
            ek = (key, ov, etype)
            attrs = self._err_attrs.get(ek)
            if attrs is None:
                attrs = self._err_attrs[ek] = {
                    **self.job_attrs(key),
                    n.OUTCOME: ov,
                    n.ERROR_TYPE: etype,
                }
            self.errors.add(1, attrs)
        if outcome is Outcome.SUCCESS:
            self.registry.last_success[key] = time.time()

    def record_queue_wait(self, key: JobKey, wait: float) -> None:
        self.queue_wait.record(wait, self.job_attrs(key))

    def _dep_attr(self, name: str, outcome: str) -> Attrs:
        k = (name, outcome)
        attrs = self._dep_attrs.get(k)
        if attrs is None:
            attrs = self._dep_attrs[k] = {n.DEPENDENCY_NAME: name, n.DEPENDENCY_OUTCOME: outcome}
        return attrs

    def record_dependency(self, name: str, outcome: str, duration: float) -> None:
        self.dep_duration.record(duration, self._dep_attr(self.dependency_name(name), outcome))

    def record_unbounded(self, name: str) -> None:
        self.dep_unbounded.add(1, {n.DEPENDENCY_NAME: self.dependency_name(name)})

    def record_telemetry_error(self, component: str) -> None:
        self.telemetry_errors.add(1, {n.COMPONENT: component})

    # -- gauges ------------------------------------------------------------
    def _gauges(self) -> Iterable[tuple[Attrs, Any]]:
        snap = self.registry.snapshot()
        for key, g in snap.jobs.items():
            yield self._gauge_attr(key), g

    def _gauge_attr(self, key: JobKey) -> Attrs:
        """A gauge's attributes, without creating the job's run series: a process whose
        runs are counted elsewhere (a prefork child) must not export counters, not even 0."""
        attrs = self._job_attrs.get(key) or self._gauge_attrs.get(key)
        if attrs is None:
            attrs = {n.JOB_NAME: key[0], n.SYSTEM: key[1], n.QUEUE_NAME: key[2]}
            self._gauge_attrs[key] = attrs
        return attrs

    def _observe_active(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(g.active, a) for a, g in self._gauges()]

    def _observe_heartbeat_age(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(g.heartbeat_age, a) for a, g in self._gauges()]

    def _observe_active_age(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(g.active_age, a) for a, g in self._gauges()]

    def _observe_stalled(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(g.stalled[reason], {**a, n.STALL_REASON: reason})
            for a, g in self._gauges()
            for reason in STALL_REASONS
        ]

    def _observe_zombies(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(g.zombies, a) for a, g in self._gauges()]

    def _observe_last_success(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(ts, self.job_attrs(k)) for k, ts in self.registry.last_success.items()]

    def _observe_capacity(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(v, {n.QUEUE_NAME: q, n.SYSTEM: s})
            for (q, s), v in self.registry.capacity.items()
        ]

    def _observe_queue_depth(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(depth, {n.QUEUE_NAME: q, n.SYSTEM: s})
            for (q, s), (depth, _age) in list(self.registry.queue_samples.items())
        ]

    def _observe_queue_oldest_age(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(age, {n.QUEUE_NAME: q, n.SYSTEM: s})
            for (q, s), (_depth, age) in list(self.registry.queue_samples.items())
            if age is not None
        ]
