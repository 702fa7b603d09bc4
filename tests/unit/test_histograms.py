"""jobpulse's histograms export exactly what the SDK's would, by a shorter path."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram as SDKHistogramType
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
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
    data = reader.get_metrics_data()
    if data is None:
        return []
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.append({
                        "attributes": dict(p.attributes),
                        "count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                        "bucket_counts": list(p.bucket_counts),
                        "exemplars": [
                            (e.value, e.span_id, e.trace_id, e.filtered_attributes)
                            for e in p.exemplars
                        ],
                    })  # fmt: skip
    return sorted(out, key=lambda p: sorted(p["attributes"].items()))


def test_the_exported_series_is_the_sdks_to_the_last_bucket_and_exemplar() -> None:
    sdk_reader, sdk_h, _ = _setup()
    jp_reader, jp_h, _ = _setup()
    fast = Histogram(jp_h)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("run") as span:
        for v in VALUES:
            sdk_h.record(v, ATTRS)
            fast.record(v, ATTRS)
    assert isinstance(fast._bindings[id(ATTRS)], _histograms._Binding)  # the short path ran
    sdk, jp = _points(sdk_reader), _points(jp_reader)
    ours = span.get_span_context()
    assert [e[1:3] for e in jp[0]["exemplars"]] == [(ours.span_id, ours.trace_id)] * len(
        jp[0]["exemplars"]
    )
    assert jp[0]["exemplars"], "a run's duration offers its span as an exemplar"
    for p in sdk + jp:
        p["exemplars"] = sorted((e[0], e[3] or {}) for e in p["exemplars"])
    assert jp == sdk
    assert jp[0]["count"] == len(VALUES)


def test_every_attribute_set_is_its_own_series() -> None:
    sdk_reader, sdk_h, _ = _setup()
    jp_reader, jp_h, _ = _setup()
    fast = Histogram(jp_h)
    sets = [dict(ATTRS, **{"jobpulse.outcome": o}) for o in ("success", "error", "timeout")]
    for i in range(30):
        attrs = sets[i % 3]
        sdk_h.record(i / 10, attrs)
        fast.record(i / 10, attrs)
    assert _points(jp_reader) == _points(sdk_reader)
    assert len(_points(jp_reader)) == 3


def test_a_view_that_drops_attributes_merges_the_series_as_the_sdk_does() -> None:
    view = View(instrument_name="jobpulse.job.duration", attribute_keys={"jobpulse.job.name"})
    sdk_reader, sdk_h, _ = _setup(views=[view])
    jp_reader, jp_h, _ = _setup(views=[view])
    fast = Histogram(jp_h)
    for i, q in enumerate(("a", "b", "a", "c")):
        attrs = dict(ATTRS, **{"jobpulse.queue.name": q})
        sdk_h.record(float(i), attrs)
        fast.record(float(i), attrs)
    assert _points(jp_reader) == _points(sdk_reader)
    assert [p["count"] for p in _points(jp_reader)] == [4]


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
