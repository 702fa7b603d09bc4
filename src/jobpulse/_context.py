"""The current run: one context variable, so threads and asyncio tasks each see their own."""

from __future__ import annotations

from contextvars import ContextVar

from ._run import JobRun

current: ContextVar[JobRun | None] = ContextVar("jobpulse_current_run", default=None)


def current_run() -> JobRun | None:
    """The run this code is executing in, or None outside a run.

    The object exposes ``job_name``, ``run_id``, ``job_id``, ``attempt``,
    ``elapsed``, ``budget``, ``step``, ``processed`` and ``total``.
    """
    return current.get()
