"""What forking a work horse costs in a process with OpenTelemetry's SDK.

After every fork the SDK gives each provider a new ``service.instance.id``,
running its resource detectors in a fresh thread pool per provider: about
2 ms per horse on a 2-core machine, as much as RQ's own work for a no-op job.
A horse's telemetry should carry its worker's stable instance id anyway (the
contract: children that export use a stable id), so around the fork of a
horse the detection is replaced by that id, and the SDK's fork handlers
merge it for free. Where the SDK has no such hook (another version), the
horse adopts the id after the fork instead (``_otel.set_instance_id``).

Merging that one-attribute resource into a provider's own still costs each
provider a new ``Resource`` (attribute validation, a lock, every tracer or
logger told) in every horse, for a resource that comes out equal. So for the
window of the fork each provider's ``_update_resource`` is shadowed by one
that skips a merge that changes nothing (and merges anything else).
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


def keep_instance(
    instance_id: str | None, providers: tuple[Any, ...] = ()
) -> list[tuple[Any, Any]]:
    """Until :func:`restore`, a fork's children keep ``instance_id`` (no detection),
    and ``providers`` whose resource already says so skip the merge."""
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
    if saved:
        for provider in providers:
            try:
                if _current_resource(provider) is None or "_update_resource" in vars(provider):
                    continue
                provider._update_resource = _skip_same(provider, provider._update_resource)
            except Exception:  # noqa: BLE001 - a provider of another shape merges as usual
                continue
            saved.append((provider, None))
    return saved


def restore(saved: list[tuple[Any, Any]]) -> None:
    for target, original in saved:
        if original is None:
            vars(target).pop("_update_resource", None)
        else:
            setattr(target, _NAME, original)


def _current_resource(provider: Any) -> Resource | None:
    found = getattr(provider, "_resource", None)  # tracer and logger providers
    if found is None:
        found = getattr(getattr(provider, "_sdk_config", None), "resource", None)  # meter
    return found if isinstance(found, Resource) else None


def _skip_same(provider: Any, update: Any) -> Any:
    def update_resource(resource: Resource) -> None:
        current = _current_resource(provider)
        if current is not None and all(
            current.attributes.get(key, _MISSING) == value
            for key, value in resource.attributes.items()
        ):
            return  # the merge would give an equal resource
        update(resource)

    return update_resource


_MISSING = object()


def fresh_connections(*roots: Any) -> int:
    """See :func:`jobpulse._otel.fresh_connections` (the core does this at every fork
    whose child builds its own metrics; a horse does it when its run turns long)."""
    from ..._otel import fresh_connections as core

    return core(*roots)
