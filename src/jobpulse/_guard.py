"""Never break the job: swallow, count and log jobpulse's own failures.

Every hook jobpulse runs inside a user's job goes through :func:`never_raise`.
A failure there is counted in ``jobpulse.telemetry.errors{jobpulse.component}``
and logged once per component, and the job goes on. Tests flip
:data:`RAISE_INTERNAL` (see :mod:`jobpulse.testing`) so the same failure fails
the test instead of hiding.

Some exceptions only pass *through* jobpulse code: a framework's asynchronous
timeout (Celery's soft time limit, RQ's death penalty) can be raised at any
bytecode, including inside jobpulse. Those are the job's, not ours, and are
re-raised untouched; adapters register them in :data:`PASSTHROUGH`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._names import LOGGER_NAME

_log = logging.getLogger(LOGGER_NAME)

#: Set by jobpulse.testing so swallowed failures fail the test.
RAISE_INTERNAL = False

#: Exception types that belong to the job even when raised inside jobpulse code.
PASSTHROUGH: tuple[type[BaseException], ...] = ()

_counter: Callable[[str], None] | None = None
_logged: set[str] = set()
_lock = threading.Lock()
_counts: dict[str, int] = {}


def set_counter(counter: Callable[[str], None] | None) -> None:
    """Route counted failures to the metrics (set by the runtime at instrument())."""
    global _counter
    _counter = counter


def add_passthrough(*types: type[BaseException]) -> None:
    global PASSTHROUGH
    PASSTHROUGH = tuple(dict.fromkeys((*PASSTHROUGH, *types)))


def counts() -> dict[str, int]:
    """Failures swallowed so far in this process, by component (for tests and the CLI)."""
    with _lock:
        return dict(_counts)


def report(component: str, exc: BaseException | None = None) -> None:
    """Count one failure inside jobpulse and log it the first time per component."""
    with _lock:
        _counts[component] = _counts.get(component, 0) + 1
        first = component not in _logged
        _logged.add(component)
    try:
        if _counter is not None:
            _counter(component)
        if first:
            _log.warning(
                "jobpulse: internal failure in %s; the job goes on, further failures are only "
                "counted in jobpulse.telemetry.errors",
                component,
                exc_info=exc,
            )
    except Exception:  # noqa: BLE001 - reporting a failure must never fail
        pass


@contextlib.contextmanager
def never_raise(component: str) -> Iterator[None]:
    """Run jobpulse code on the job's path; a failure is counted, never raised."""
    try:
        yield
    except PASSTHROUGH:
        raise
    except Exception as exc:  # noqa: BLE001 - swallow() re-raises in tests
        swallow(component, exc)


def swallow(component: str, exc: Exception) -> None:
    """Count and log a failure caught by hand in a hot path (``never_raise`` spelled
    out, without a context manager's cost); re-raises it when tests ask."""
    report(component, exc)
    if RAISE_INTERNAL:
        raise exc


F = TypeVar("F", bound=Callable[..., Any])


def guarded(component: str, default: Any = None) -> Callable[[F], F]:
    """Decorator form of :func:`never_raise`, returning ``default`` on failure."""

    def wrap(fn: F) -> F:
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except PASSTHROUGH:
                raise
            except Exception as exc:  # noqa: BLE001 - swallow() re-raises in tests
                swallow(component, exc)
                return default

        inner.__name__ = getattr(fn, "__name__", "guarded")
        inner.__doc__ = fn.__doc__
        inner.__wrapped__ = fn  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap
