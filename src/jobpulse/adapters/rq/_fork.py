"""What forking a work horse costs in a process with OpenTelemetry's SDK.

After every fork the SDK gives each provider a new ``service.instance.id``,
running its resource detectors in a fresh thread pool per provider: about
2 ms per horse on a 2-core machine, as much as RQ's own work for a no-op job.
A horse's telemetry should carry its worker's stable instance id anyway (the
contract: children that export use a stable id), so around the fork of a
horse the detection is replaced by that id, and the SDK's fork handlers
merge it for free. Where the SDK has no such hook (another version), the
horse adopts the id after the fork instead (``_otel.set_instance_id``).
"""

from __future__ import annotations

import importlib
from typing import Any

from opentelemetry.sdk.resources import Resource

_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics._internal",
    "opentelemetry.sdk._logs._internal",
)
_NAME = "_get_process_dependent_resource"
_resources: dict[str, Resource] = {}


def keep_instance(instance_id: str | None) -> list[tuple[Any, Any]]:
    """Until :func:`restore`, a fork's children keep ``instance_id`` (no detection)."""
    if not instance_id:
        return []
    resource = _resources.get(instance_id)
    if resource is None:
        resource = _resources[instance_id] = Resource({"service.instance.id": instance_id})
        if len(_resources) > 16:
            _resources.clear()

    def stable() -> Resource:
        return resource

    saved = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = getattr(module, _NAME, None)
        if original is None:
            continue
        setattr(module, _NAME, stable)
        saved.append((module, original))
    return saved


def restore(saved: list[tuple[Any, Any]]) -> None:
    for module, original in saved:
        setattr(module, _NAME, original)


def fresh_connections(*roots: Any) -> int:
    """Close the HTTP connections a horse inherited in its exporters' sessions.

    A keep-alive connection of the worker's exporter is, after the fork, the same
    socket in two processes; a horse that exports on it (a long run) would mix
    its requests with the worker's. Closing the horse's copy leaves the worker's
    connection alone (no shutdown is sent) and the horse's next export opens its
    own. Walks the processors and exporters under ``roots`` (ten levels deep at most).
    """
    try:
        import requests
    except ImportError:  # pragma: no cover - the OTLP/HTTP exporter needs requests
        return 0
    closed = 0
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0) for root in roots if root is not None]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 10:
            continue
        seen.add(id(obj))
        if isinstance(obj, requests.Session):
            obj.close()
            closed += 1
            continue
        if isinstance(obj, (tuple, list)):
            stack.extend((item, depth + 1) for item in obj)
            continue
        module = type(obj).__module__ or ""
        if not module.startswith(("opentelemetry", "jobpulse")):
            continue
        try:
            children = vars(obj).values()
        except TypeError:
            continue
        stack.extend((child, depth + 1) for child in children)
    return closed
