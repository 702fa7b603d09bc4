"""Span attributes for RQ: messaging, the Redis server (host and port only, never a
URL, so never credentials), and job arguments where the user allowed them."""

from __future__ import annotations

import inspect
import pickletools
from typing import Any

from ... import _lifecycle
from ... import _names as n

SYSTEM = "rq"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

_cache: dict[tuple[str, str, Any, Any], dict[str, Any]] = {}


def _server(queue: Any) -> tuple[Any, Any]:
    try:
        kwargs = queue.connection.connection_pool.connection_kwargs
    except AttributeError:
        return None, None
    host = kwargs.get("host")
    if not isinstance(host, str):  # a unix socket: no network address to report
        return None, None
    port = kwargs.get("port")
    return host, port if isinstance(port, int) else None


def base(queue: Any, operation: str) -> dict[str, Any]:
    """The attributes every span of ``operation`` (``send``/``process``) on ``queue`` carries
    (a shared dict: copy before changing it)."""
    host, port = _server(queue)
    key = (operation, queue.name, host, port)
    attrs = _cache.get(key)
    if attrs is None:
        attrs = {
            n.MESSAGING_SYSTEM: SYSTEM,
            n.MESSAGING_OPERATION_NAME: operation,
            n.MESSAGING_OPERATION_TYPE: operation,
            n.MESSAGING_DESTINATION_NAME: queue.name,
        }
        if host is not None:
            attrs[SERVER_ADDRESS] = host
            if port is not None:
                attrs[SERVER_PORT] = port
        if len(_cache) < 1000:
            _cache[key] = attrs
    return attrs


#: RQ's default (pickle) serializer, set at install
PICKLE: Any = None
_PREAMBLE = frozenset({"PROTO", "FRAME", "MARK"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})


def job_name_without_unpickling(job: Any) -> str | None:
    """The job's name, if it can be had without unpickling the job's payload.

    For the forking worker, which stock RQ never has unpickle a payload (its
    ``__setstate__`` code, its memory, its failures are the horse's). RQ's
    payload is the pickled tuple ``(func_name, instance, args, kwargs)``: the
    name is the first string in it, read with :func:`pickletools.genops`,
    which decodes opcodes and builds nothing. None for another serializer or
    any other shape.
    """
    found = job.__dict__.get("_func_name")
    if isinstance(found, str):
        return found or None
    data = job.__dict__.get("_data")
    serializer = getattr(job, "serializer", None)
    if not isinstance(data, bytes) or serializer is not PICKLE or PICKLE is None:
        return None
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in _STRINGS:
                return arg if isinstance(arg, str) and arg else None
            if op.name not in _PREAMBLE:
                return None
    except Exception:  # noqa: BLE001 - not a pickle this reads: the horse unpickles it
        return None
    return None


def job_name(job: Any) -> str:
    """The job's name: RQ's function path (``tasks.nightly_export``)."""
    name = job.func_name
    return name if isinstance(name, str) and name else "unknown"


def args(job: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The allowed arguments of a job as ``jobpulse.job.arg.<name>`` attributes.

    Positional arguments are named through the function's signature. Nothing
    is read unless the job's ``record_args`` allow-list names an argument.
    """
    if not allowed:
        return {}
    values: dict[str, Any] = {}
    positional = list(job.args or ())
    if positional:
        try:
            values.update(inspect.signature(job.func).bind_partial(*positional).arguments)
        except (TypeError, ValueError):
            pass
    values.update(job.kwargs or {})
    return _lifecycle.arg_values(allowed, values)
