"""jobpulse: background jobs you cannot lose track of.

One call, at worker start::

    import jobpulse
    jobpulse.instrument()

gives every Celery task, RQ job, ``@jobpulse.job`` function and matching
asyncio task a run span, job metrics, structured logs and a watchdog that
reports stuck runs while they are stuck. See ``docs/telemetry.md`` for every
name emitted.
"""

from __future__ import annotations

from typing import Any

from . import _runtime
from ._api import dependency, heartbeat, job, step
from ._config import ConfigurationError
from ._context import current_run
from ._run import Budget, BudgetExceeded
from ._version import VERSION
from .guardrails._once import once

__version__ = VERSION

__all__ = [
    "Budget",
    "BudgetExceeded",
    "ConfigurationError",
    "current_run",
    "dependency",
    "flush",
    "heartbeat",
    "instrument",
    "job",
    "once",
    "step",
    "uninstrument",
]


def instrument(**options: Any) -> None:
    """Turn jobpulse on for this process. Idempotent: later calls are ignored.

    Options (each also read from ``JOBPULSE_<NAME>``; see the README's table):
    ``enforce``, ``budgets``, ``default_budget``, ``asyncio_jobs``,
    ``heartbeat_interval``, ``configure_otel``, ``tracer_provider``,
    ``meter_provider``, ``logger_provider``, ``continue_trace``, ``adapters``,
    ``log_format``, ``record_args``, ``prometheus_port``, ``prometheus_host``,
    ``watchdog_interval``, ``cancel_grace``, ``flush_timeout``.

    A bad value raises :class:`ConfigurationError` (a ``ValueError``) naming the
    setting and the valid values.
    """
    _runtime.instrument(**options)


def uninstrument() -> None:
    """Remove every hook jobpulse installed and stop its watchdog. Idempotent."""
    _runtime.uninstrument()


def flush(timeout: float | None = None) -> bool:
    """Export what is buffered now, waiting at most ``timeout`` seconds (default:
    the ``flush_timeout`` setting). Returns False when the deadline passed first.

    Call it before a process ends with ``os._exit`` (forked children do).
    """
    rt = _runtime.get()
    return True if rt is None else rt.flush(timeout)
