"""RQ's own Redis calls during a run are not the job's dependency calls.

jobpulse records the calls a run makes (redis-py, HTTP, sockets) as its
dependencies. The run span covers RQ's bookkeeping for the attempt too
(marking the job started, saving its result), whose Redis commands would
otherwise count as the job's "unbounded" Redis calls. So the run is marked
as jobpulse-internal for detection, except while ``Job._execute`` calls the
job's own function (``Job.perform`` itself talks to Redis in RQ 2.x).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

_inside: ContextVar[bool] | None = None


def load() -> None:
    global _inside
    try:
        from ...autodeps import _inside as flag
    except ImportError:  # a jobpulse without dependency detection
        return
    _inside = flag


def rq_internal() -> Token[bool] | None:
    """From here on, calls are RQ's (undo with :func:`reset`)."""
    return _inside.set(True) if _inside is not None else None


def reset(token: Token[bool] | None) -> None:
    if token is not None and _inside is not None:
        _inside.reset(token)


def job_execute(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Job._execute``: the job's own function, whose calls are the run's dependencies."""

    def perform(self: Any, *args: Any, **kwargs: Any) -> Any:
        flag = _inside
        if flag is None or not flag.get():
            return original(self, *args, **kwargs)
        token = flag.set(False)
        try:
            return original(self, *args, **kwargs)
        finally:
            flag.reset(token)

    return perform
