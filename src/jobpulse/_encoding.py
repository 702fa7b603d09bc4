"""OTLP encoding that remembers the attribute values runs repeat.

The SDK's OTLP encoder builds two protobuf messages for every attribute of
every span and log record, about 5 us each on a 2-core machine. A run span
carries the contract's 14 to 16 attributes and each run writes two log lines
with 7 to 9 more, so encoding was the largest single cost of a run's
telemetry, paid by an export thread for the GIL the job needs. Most of those
values repeat from run to run (job name, system, queue, worker, outcome,
attempt), so while jobpulse is instrumented the encoder keeps the encoded
``KeyValue`` of each repeated (key, value) and lets protobuf copy it, which
costs a quarter as much. Values that rarely repeat (ids, durations, messages)
are encoded as before.

Only the SDK's attribute function is swapped, in its trace and log encoders,
for every OTLP exporter of the process (jobpulse's runs usually go through
the user's own exporter). The bytes on the wire are the same:
``tests/unit/test_encoding.py`` compares them with the SDK's encoding, and
should the cache ever fail, the SDK's own function encodes the batch.
``uninstrument()`` puts the SDK's function back.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import _guard
from . import _names as n

_log = logging.getLogger(__name__)

#: attributes whose values are (nearly) unique per run: caching them only churns
UNIQUE_KEYS = frozenset(
    {
        n.JOB_ID,
        n.RUN_ID,
        "messaging.message.id",
        "exception.message",
        "exception.stacktrace",
        "jobpulse.stack",
    }
)
#: bounded: high-cardinality values under keys not listed above clear it now and then
MAX_ENTRIES = 4096
ENCODER_MODULES = (
    "opentelemetry.exporter.otlp.proto.common._internal.trace_encoder",
    "opentelemetry.exporter.otlp.proto.common._internal._log_encoder",
)

_cache: dict[tuple[str, type, Any], Any] = {}
_installed: list[tuple[Any, Callable[..., Any]]] = []
_lock = threading.Lock()


def cached_attributes(
    attributes: Mapping[str, Any] | None, encode_key_value: Callable[[str, Any], Any]
) -> list[Any]:
    """The SDK's ``_encode_attributes``, with repeated (key, value) pairs memoized."""
    if not attributes:
        return []
    out = []
    cache = _cache
    for key, value in attributes.items():
        cls = value.__class__
        if (cls is str or cls is int or cls is bool) and key not in UNIQUE_KEYS:
            entry = (key, cls, value)
            encoded = cache.get(entry)
            if encoded is None:
                encoded = encode_key_value(key, value)
                if len(cache) >= MAX_ENTRIES:
                    cache.clear()
                cache[entry] = encoded
            out.append(encoded)
            continue
        try:
            out.append(encode_key_value(key, value))
        except Exception as error:  # noqa: BLE001 - the SDK's behaviour: skip the attribute
            _log.exception("Failed to encode key %s: %s", key, error)
    return out


def _dispatcher(original: Callable[..., Any], encode: Callable[[str, Any], Any]) -> Any:
    def encode_attributes(attributes: Any) -> Any:
        try:
            return cached_attributes(attributes, encode)
        except Exception as exc:  # noqa: BLE001 - the SDK's own function takes over
            _guard.report("export.encoding", exc)
            return original(attributes)

    encode_attributes.jobpulse_original = original  # type: ignore[attr-defined]
    return encode_attributes


def install() -> bool:
    """Swap in the memoizing attribute encoder (idempotent). False, and nothing
    changed, when this SDK's encoder does not have the expected shape."""
    with _lock:
        if _installed:
            return True
        try:
            from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value

            modules = [importlib.import_module(name) for name in ENCODER_MODULES]
        except ImportError:
            return False
        if not all(callable(getattr(m, "_encode_attributes", None)) for m in modules):
            return False
        for module in modules:
            original = module._encode_attributes
            module._encode_attributes = _dispatcher(original, _encode_key_value)  # type: ignore[attr-defined]
            _installed.append((module, original))
        return True


def uninstall() -> None:
    with _lock:
        for module, original in _installed:
            module._encode_attributes = original
        _installed.clear()
        _cache.clear()
