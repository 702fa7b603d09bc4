"""jobpulse's histograms export exactly what the SDK's would, by a shorter path."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram as SDKHistogramType
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal import _disable_meter_configurator
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.trace import TracerProvider

from jobpulse import _guard, _histograms
from jobpulse._histograms import _UNBOUND, Histogram

BUCKETS = [0.005, 0.01, 0.1, 1.0, 10.0]
ATTRS = {"jobpulse.job.name": "report", "jobpulse.system": "celery", "jobpulse.queue.name": "q"}
VALUES = [0.0, 0.003, 0.005, 0.0051, 0.5, 1.0, 9.99, 10.0, 250.0, 0.02]


def _setup(views: Any = (), **reader: Any) -> tuple[InMemoryMetricReader, Any, MeterProvider]:
    r = InMemoryMetricReader(**reader)
    mp = MeterProvider(metric_readers=[r], views=views)
    h = mp.get_meter("t").create_histogram(
        "jobpulse.job.duration", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
    )
    return r, h, mp


def _points(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    """Everything a reader exports for the histogram but the timestamps."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    point = {
                        k: v for k, v in vars(p).items()
                        if k not in ("start_time_unix_nano", "time_unix_nano", "exemplars")
                    }  # fmt: skip
                    point["name"] = metric.name
                    point["attributes"] = dict(p.attributes)
                    point["exemplars"] = sorted(
                        (e.value, e.span_id, e.trace_id, repr(e.filtered_attributes))
                        for e in p.exemplars
                    )
                    out.append(point)
    return sorted(out, key=repr)


def _compare(
    sets: list[dict[str, Any]],
    views: Any = (),
    readers: Any = lambda: [InMemoryMetricReader()],
    **provider: Any,
) -> tuple[list[Any], list[Any], Histogram]:
    """The same records through the SDK and through the short path, inside one span:
    what each set of readers exports, and the wrapper (to look at its bindings)."""
    tracer = TracerProvider().get_tracer("t")
    exported = []
    fast = None
    with tracer.start_as_current_span("run"):
        for short in (False, True):
            rs = readers()
            mp = MeterProvider(metric_readers=rs, views=views, **provider)
            h = mp.get_meter("t").create_histogram(
                "jobpulse.job.duration", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
            )
            fast = Histogram(h) if short else None
            for i in range(60):
                value, attrs = VALUES[i % len(VALUES)], sets[i % len(sets)]
                (fast.record if fast is not None else h.record)(value, attrs)
            exported.append([_points(r) for r in rs])
    assert fast is not None
    return exported[0], exported[1], fast


def _bound(fast: Histogram) -> int:
    return sum(b is not _UNBOUND for b in fast._bindings.values())


OUTCOMES = [dict(ATTRS, **{"jobpulse.outcome": o}) for o in ("success", "error", "timeout")]


def test_the_exported_series_is_the_sdks_to_the_last_bucket_and_exemplar() -> None:
    sdk, ours, fast = _compare([ATTRS])
    assert ours == sdk
    assert _bound(fast) == 1  # the short path ran
    [[point]] = ours
    assert point["count"] == 60
    assert point["exemplars"], "a run's duration offers its span as an exemplar"


def test_every_attribute_set_is_its_own_series() -> None:
    sdk, ours, fast = _compare(OUTCOMES)
    assert ours == sdk
    assert len(ours[0]) == 3
    assert _bound(fast) == 3


def test_two_readers_each_get_every_record() -> None:
    sdk, ours, fast = _compare(
        OUTCOMES, readers=lambda: [InMemoryMetricReader(), InMemoryMetricReader()]
    )
    assert ours == sdk
    assert _bound(fast) == 3
    assert ours[0] == ours[1]


@pytest.mark.parametrize(
    "views",
    [
        [View(instrument_name="jobpulse.job.duration", attribute_keys={"jobpulse.outcome"})],
        [View(instrument_name="jobpulse.job.duration", name="renamed")],
        [
            View(
                instrument_name="jobpulse.job.duration",
                aggregation=ExponentialBucketHistogramAggregation(),
            )
        ],
        [
            View(
                instrument_name="jobpulse.job.duration",
                name="a2",
                aggregation=ExponentialBucketHistogramAggregation(),
            ),
            View(instrument_name="jobpulse.*", attribute_keys={"jobpulse.queue.name"}),
        ],
    ],
    ids=["attribute-keys", "renamed", "exponential", "two-views"],
)
def test_views_shape_the_series_as_they_do_for_the_sdk(views: Any) -> None:
    sdk, ours, fast = _compare(OUTCOMES, views=views)
    assert ours == sdk
    assert _bound(fast) == 3


def test_exemplars_keep_the_attributes_a_view_filtered_out() -> None:
    view = View(instrument_name="jobpulse.job.duration", attribute_keys={"jobpulse.job.name"})
    sdk, ours, _ = _compare(OUTCOMES, views=[view], exemplar_filter=AlwaysOnExemplarFilter())
    assert ours == sdk
    assert any("jobpulse.outcome" in e[3] for e in ours[0][0]["exemplars"])


def test_a_dropped_instrument_records_nothing_either_way() -> None:
    view = View(instrument_name="jobpulse.job.duration", aggregation=DropAggregation())
    sdk, ours, _ = _compare(OUTCOMES, views=[view])
    assert ours == sdk == [[]]


def test_sets_over_the_cardinality_limit_stay_on_the_sdks_path() -> None:
    view = View(instrument_name="jobpulse.job.duration", aggregation_cardinality_limit=2)
    sets = [{"q": str(i)} for i in range(4)]
    sdk, ours, fast = _compare(sets, views=[view])
    assert ours == sdk
    assert any(p["attributes"] == {"otel.metric.overflow": True} for p in ours[0])
    assert 0 < _bound(fast) < 4


def test_a_meter_turned_off_at_run_time_stops_recording() -> None:
    reader, h, mp = _setup()
    fast = Histogram(h)
    for _ in range(3):
        fast.record(1.0, ATTRS)
    assert _bound(fast) == 1
    mp._set_meter_configurator(meter_configurator=_disable_meter_configurator)
    for _ in range(5):
        fast.record(1.0, ATTRS)
    assert sum(p["count"] for p in _points(reader)) == 3


def test_collections_in_between_lose_nothing() -> None:
    jp_reader, jp_h, _ = _setup()
    fast = Histogram(jp_h)
    for round_ in range(1, 4):
        for v in VALUES:
            fast.record(v, ATTRS)
        assert _points(jp_reader)[0]["count"] == round_ * len(VALUES)  # cumulative


def test_delta_temporality_always_takes_the_sdks_path() -> None:
    """The SDK swaps a delta series table at collection, under its lock."""
    reader, h, _ = _setup(preferred_temporality={SDKHistogramType: AggregationTemporality.DELTA})
    fast = Histogram(h)
    totals = 0
    for _ in range(3):
        for v in VALUES:
            fast.record(v, ATTRS)
        totals += _points(reader)[0]["count"]
    assert fast._bindings[id(ATTRS)] is _UNBOUND
    assert totals == 3 * len(VALUES)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_values_the_sdk_rejects_are_still_the_sdks_to_reject(bad: float) -> None:
    reader, h, _ = _setup()
    fast = Histogram(h)
    fast.record(1.0, ATTRS)
    fast.record(1.0, ATTRS)
    fast.record(bad, ATTRS)  # the SDK warns and drops it
    assert _points(reader)[0]["count"] == 2


def test_an_instrument_that_is_not_the_sdks_is_just_called() -> None:
    calls: list[tuple[float, Any]] = []

    class Vendor:
        def record(self, value: float, attributes: Any = None) -> None:
            calls.append((value, attributes))

    fast = Histogram(Vendor())
    fast.record(1.5, ATTRS)
    fast.record(2.5, ATTRS)
    assert calls == [(1.5, ATTRS), (2.5, ATTRS)]
    assert not fast._bindings


def test_a_reader_added_later_gets_the_next_measurements() -> None:
    """The SDK replaces its reader table when a reader is added: bindings notice."""
    first, h, mp = _setup()
    fast = Histogram(h)
    fast.record(1.0, ATTRS)
    fast.record(1.0, ATTRS)
    second = InMemoryMetricReader()
    mp._measurement_consumer.add_metric_reader(second)  # what the SDK does for a new reader
    second._set_collect_callback(mp._measurement_consumer.collect)
    fast.record(2.0, ATTRS)
    fast.record(3.0, ATTRS)
    assert _points(first)[0]["count"] == 4
    assert _points(second)[0]["count"] == 2


@pytest.mark.allow_internal_errors
def test_a_failure_to_bind_is_counted_and_the_sdk_keeps_recording(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("an SDK with other internals")

    monkeypatch.setattr(_histograms, "_binding", broken)
    reader, h, _ = _setup()
    fast = Histogram(h)
    before = _guard.counts().get("metrics.histogram", 0)
    for v in VALUES:
        fast.record(v, ATTRS)
    assert _points(reader)[0]["count"] == len(VALUES)
    assert _guard.counts().get("metrics.histogram", 0) == before + 1  # once, then it stops trying
