"""OTLP encoding that remembers the attribute values runs repeat.

The SDK's OTLP encoder builds two protobuf messages for every attribute of
every span and log record, about 5 us each on a 2-core machine. A run span
carries the contract's 14 to 16 attributes and each run writes two log lines
with 7 to 9 more, so encoding was the largest single cost of a run's
telemetry, paid by an export thread for the GIL the job needs. Most of those
values repeat from run to run (job name, system, queue, worker, outcome,
attempt), so while jobpulse is instrumented the encoder keeps the encoded
``KeyValue`` of each (key, value) of :data:`CACHED_KEYS` and lets protobuf
copy it, which costs a quarter as much.

Only jobpulse's own low-cardinality keys are cached (an allow-list, short
values): a user's attribute values (URLs, statements, recorded arguments) are
never kept in memory past their export. The SDK's attribute function is
swapped in its trace and log encoders, and the OTLP/HTTP span and log
exporters' request encoders are replaced by :mod:`._wire`'s writers (which
keep the same cache as ready bytes), for every OTLP exporter of the process
(jobpulse's runs usually go through the user's own exporter). The bytes on the
wire are the same (``tests/unit/test_encoding.py`` and ``test_wire.py``
compare them with the SDK's encoding); a call of another shape goes to the
SDK's function. ``uninstrument()`` puts the SDK's functions back.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import _guard
from . import _names as n

#: the SDK encoder's logger: an attribute that cannot be encoded is reported as the SDK does
_sdk_log = logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal")

#: jobpulse's attributes whose values repeat from run to run (never ids, never user data)
CACHED_KEYS = frozenset(
    {
        n.JOB_NAME, n.ATTEMPT, n.SYSTEM, n.QUEUE_NAME, n.OUTCOME, n.ACTION,
        n.HEARTBEAT_COUNT, n.STEP_NAME, n.DEPENDENCY_NAME, n.DEPENDENCY_OUTCOME,
        n.STALL_REASON, n.COMPONENT, n.ERROR_TYPE, n.CODE_FUNCTION_NAME, n.REDELIVERED,
        n.MESSAGING_SYSTEM, n.MESSAGING_OPERATION_NAME, n.MESSAGING_OPERATION_TYPE,
        n.MESSAGING_DESTINATION_NAME, n.MESSAGING_CLIENT_ID, n.FAILURE_CLASS,
    }
)  # fmt: skip
#: longer strings are encoded each time (a job name or queue is shorter)
MAX_VALUE_LENGTH = 256
#: a bound on memory: the cache starts over when full
MAX_ENTRIES = 4096
ENCODER_MODULES = (
    "opentelemetry.exporter.otlp.proto.common._internal.trace_encoder",
    "opentelemetry.exporter.otlp.proto.common._internal._log_encoder",
)
#: the OTLP/HTTP exporters whose request encoder :mod:`._wire` replaces: (module, name)
EXPORTERS = (
    ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "encode_spans"),
    ("opentelemetry.exporter.otlp.proto.http._log_exporter", "encode_logs"),
)

_cache: dict[tuple[str, type, Any], Any] = {}
#: (module, name, the SDK's function, ours)
_installed: list[tuple[Any, str, Callable[..., Any], Callable[..., Any]]] = []
_lock = threading.Lock()


def cacheable(key: str, value: Any) -> bool:
    """Whether an attribute's encoding may be kept: one of :data:`CACHED_KEYS` with a
    plain, short value (the one policy for this cache and :mod:`._wire`'s)."""
    cls = value.__class__
    return key in CACHED_KEYS and (
        cls is int or cls is bool or (cls is str and len(value) <= MAX_VALUE_LENGTH)
    )


def cached_attributes(
    attributes: Mapping[str, Any] | None, encode_key_value: Callable[[str, Any], Any]
) -> list[Any]:
    """The SDK's ``_encode_attributes``, with :data:`CACHED_KEYS` values memoized."""
    if not attributes:
        return []
    out = []
    cache = _cache
    for key, value in attributes.items():
        try:
            if cacheable(key, value):
                entry = (key, value.__class__, value)
                encoded = cache.get(entry)
                if encoded is None:
                    encoded = encode_key_value(key, value)
                    if len(cache) >= MAX_ENTRIES:
                        cache.clear()
                    cache[entry] = encoded
                out.append(encoded)
            else:
                out.append(encode_key_value(key, value))
        except Exception as error:  # noqa: BLE001 - the SDK's behaviour: skip the attribute
            _sdk_log.exception("Failed to encode key %s: %s", key, error)
    return out


def _dispatcher(original: Callable[..., Any], encode: Callable[[str, Any], Any]) -> Any:
    """The function the encoders call instead of ``original``: the cache for the call
    shape it knows, the SDK's own function for anything else (another SDK version may
    pass more arguments) and should the cache itself ever fail."""

    def encode_attributes(attributes: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return original(attributes, *args, **kwargs)
        try:
            return cached_attributes(attributes, encode)
        except Exception as exc:  # noqa: BLE001 - counted; the SDK's function takes over
            _guard.report("export.encoding", exc)
            return original(attributes)

    return encode_attributes


def _requests(name: str, original: Callable[..., Any], common: Any) -> Callable[..., Any]:
    """An exporter's ``encode_spans``/``encode_logs``: the request written by
    :mod:`._wire`, or the SDK's (the same bytes) for a batch the writer hands over."""
    from ._wire import Delegate, EncodedRequest, LogEncoder, SpanEncoder

    writer = (SpanEncoder if name == "encode_spans" else LogEncoder)(common)

    def encode(batch: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return original(batch, *args, **kwargs)
        failure = None
        try:
            return EncodedRequest(writer.request(batch), batch, original)
        except Delegate:
            pass
        except Exception as exc:  # noqa: BLE001 - the SDK's encoder takes over
            failure = exc
        request = original(batch)  # raises as before if the SDK cannot encode it either
        if failure is not None:
            _guard.report("export.wire", failure)  # it could: a fault of the writer's
        return request

    encode.__name__ = name
    return encode


def install() -> None:
    """Swap in the memoizing attribute encoder where the SDK's OTLP encoders are loaded,
    and the request writers in the OTLP/HTTP span and log exporters (idempotent).
    Never imports them: a process without OTLP export carries none of it."""
    with _lock:
        done = {(module, name) for module, name, _, _ in _installed}
        common = sys.modules.get("opentelemetry.exporter.otlp.proto.common._internal")
        _encode_key_value = getattr(common, "_encode_key_value", None)
        if _encode_key_value is None:
            return
        for module_name in ENCODER_MODULES:
            module = sys.modules.get(module_name)
            original = getattr(module, "_encode_attributes", None)
            if module is None or (module, "_encode_attributes") in done or not callable(original):
                continue
            replacement = _dispatcher(original, _encode_key_value)
            module._encode_attributes = replacement  # type: ignore[attr-defined]
            _installed.append((module, "_encode_attributes", original, replacement))
        for module_name, name in EXPORTERS:
            exporter = sys.modules.get(module_name)
            original = getattr(exporter, name, None)
            if exporter is None or (exporter, name) in done or not callable(original):
                continue
            replacement = _requests(name, original, common)
            setattr(exporter, name, replacement)
            _installed.append((exporter, name, original, replacement))


def uninstall() -> None:
    """Put the SDK's functions back, unless someone wrapped ours since (theirs stays)."""
    with _lock:
        for module, name, original, replacement in _installed:
            if getattr(module, name, None) is replacement:
                setattr(module, name, original)
        _installed.clear()
        _cache.clear()
