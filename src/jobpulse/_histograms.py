"""Recording jobpulse's histograms without the SDK re-validating a fixed attribute set.

``Histogram.record`` in the OpenTelemetry SDK cleans the attribute mapping it
is given, copies it, sorts and hashes it into a key, and only then finds the
series' aggregation: about 10 us for a four-attribute set, as much as starting
the run's span. jobpulse records a run's duration and queue wait with a few
attribute dicts it builds once per (job, queue, outcome) and never mutates, so
that work gives the same answer every time.

A :class:`Histogram` wraps one SDK histogram. The first measurement of an
attribute set goes through the SDK (which creates the series); the binding then
keeps what the SDK found (the attributes as the SDK cleaned them and each
reader's aggregation of that series) and later measurements go to those
aggregations directly, with the SDK's own exemplar filter and ``Measurement``.
The exported data is the same.

Before every fast measurement the binding checks that it still describes the
SDK's state (same readers, same aggregation in each series table), and falls
back to ``Histogram.record`` otherwise. It never binds where the SDK's path
does more than that: delta temporality (the series table is swapped at
collection, under a lock), a meter turned off by configuration, a value the SDK
would warn about (negative, NaN, infinite), an SDK whose internals look
different, or an instrument that is not the SDK's (a proxy, another vendor's).
"""

from __future__ import annotations

import math
import threading
from time import time_ns
from typing import Any

from opentelemetry.context import get_current

from . import _guard

try:  # the SDK's internals this relies on; any other layout: the plain SDK path
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.instrument import Histogram as _SDKHistogram
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    _SDK_TYPES: tuple[type, ...] = (_SDKHistogram,)
except ImportError:  # pragma: no cover - another SDK version
    _SDK_TYPES = ()

_set = object.__setattr__
#: attribute sets bound per histogram; beyond it, the SDK path (a cap, not a cache)
MAX_BINDINGS = 4096


class _Binding:
    __slots__ = ("attrs", "clean", "storages", "targets")

    def __init__(self, attrs: Any, clean: Any, storages: Any, targets: Any) -> None:
        self.attrs = attrs  # the caller's dict: kept, so its id() is never reused
        self.clean = clean
        self.storages = storages
        self.targets = targets  # ((series table, key, aggregation), ...)


#: an attribute set that always takes the SDK's path
_UNBOUND = _Binding(None, None, None, ())


class Histogram:
    """An SDK histogram whose attribute sets are fixed dicts (see the module doc)."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self._bindings: dict[int, _Binding] = {}  # id(attrs) -> binding (or _UNBOUND)
        self._lock = threading.Lock()
        self._supported = bool(_SDK_TYPES) and isinstance(histogram, _SDK_TYPES)

    def record(self, value: float, attrs: dict[str, Any]) -> None:
        """``attrs`` must not change after its first use (jobpulse's cached dicts)."""
        binding = self._bindings.get(id(attrs))
        histogram = self.histogram
        if (
            binding is not None
            and binding.attrs is attrs
            and 0.0 <= value < math.inf
            and histogram._is_enabled()  # a meter can be turned off at any time
        ):
            consumer = histogram._measurement_consumer
            if consumer._reader_storages is binding.storages:
                targets = binding.targets
                for table, key, aggregation in targets:
                    if table.get(key) is not aggregation:
                        break
                else:
                    now = time_ns()
                    context = get_current()
                    clean = binding.clean
                    measurement = Measurement(value, now, histogram, context, None)
                    _set(measurement, "attributes", clean)
                    sample = consumer._sdk_config.exemplar_filter.should_sample(
                        value, now, clean, context
                    )
                    for _table, _key, aggregation in targets:
                        aggregation.aggregate(measurement, sample)
                    return
        histogram.record(value, attrs)
        # first seen, or the SDK's state changed since it was bound: bind (anew)
        if self._supported and binding is not _UNBOUND and histogram._is_enabled():
            self._bind(attrs)

    def _bind(self, attrs: dict[str, Any]) -> None:
        try:
            binding = _binding(self.histogram, attrs) or _UNBOUND
        except Exception as exc:  # noqa: BLE001 - the SDK's path keeps working without it
            self._supported = False
            _guard.swallow("metrics.histogram", exc)
            return
        with self._lock:
            if len(self._bindings) < MAX_BINDINGS or id(attrs) in self._bindings:
                self._bindings[id(attrs)] = binding


def _binding(histogram: Any, attrs: dict[str, Any]) -> _Binding | None:
    """What the SDK found for ``attrs`` on its last record, if it can be reused."""
    consumer = histogram._measurement_consumer
    storages = consumer._reader_storages
    clean = Measurement(0, 0, histogram, get_current(), attrs).attributes
    targets = []
    for storage in storages.values():
        matches = storage._instrument_view_instrument_matches.get(histogram)
        if not matches:
            return None
        for match in matches:
            if match._reset_on_collect:
                return None
            series = dict(clean) if clean else {}
            keys = match._view._attribute_keys
            if keys is not None:
                series = {k: v for k, v in series.items() if k in keys}
            key = _hash_attributes(series)
            table = match._attributes_aggregation
            aggregation = table.get(key)
            if aggregation is None:  # over the cardinality limit: the overflow series
                return None
            targets.append((table, key, aggregation))
    return _Binding(attrs, clean, storages, tuple(targets))
