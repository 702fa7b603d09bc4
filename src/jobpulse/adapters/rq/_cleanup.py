"""Jobs abandoned by a dead worker: RQ's started-registry cleanup finds them.

When a worker dies with its horse (SIGKILL, a lost machine), its job stays
``started`` until ``StartedJobRegistry.cleanup`` (run by every worker's
maintenance, and by ``registry.count``) sees its heartbeat expire and retries
or fails it with ``AbandonedJobError``. jobpulse records each such run as
``lost`` in the process that ran the cleanup: the jobs whose status was still
``started`` when the cleanup picked them up. It costs one extra Redis round
trip, and only when the cleanup has expired entries.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import SpanKind

from ... import _guard, _lifecycle, _runtime
from ..._run import Action, Outcome
from . import _attrs, _runs

#: rq.registry.StartedJobRegistry, set at install
STARTED: Any = None

_found: ContextVar[dict[str, tuple[Any, _runs.RunState]] | None] = ContextVar(
    "jobpulse_rq_abandoned", default=None
)


def cleanup(original: Callable[..., Any]) -> Callable[..., Any]:
    def clean(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _runtime.get() is None or _found.get() is not None:
            return original(self, *args, **kwargs)
        found: dict[str, tuple[Any, _runs.RunState]] = {}
        token = _found.set(found)
        try:
            return original(self, *args, **kwargs)
        finally:
            _found.reset(token)
            if found:
                _record(self, found)

    return clean


def get_expired_job_ids(original: Callable[..., Any]) -> Callable[..., Any]:
    def expired(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids = original(self, *args, **kwargs)
        found = _found.get()
        if found is not None and ids and STARTED is not None and isinstance(self, STARTED):
            with _guard.never_raise("adapter.rq.abandoned"):
                jobs = self.job_class.fetch_many(
                    ids, connection=self.connection, serializer=self.serializer
                )
                for job in jobs:
                    if job is not None and job.get_status(refresh=False) == "started":
                        state = _runs.RunState(_runs.attempt_of(job))
                        found[job.id] = (job, state)
                        _runs.active[job.id] = state
        return ids

    return expired


def _record(registry: Any, found: dict[str, tuple[Any, _runs.RunState]]) -> None:
    queue = registry.get_queue()
    for job_id, (job, state) in found.items():
        _runs.active.pop(job_id, None)
        with _guard.never_raise("adapter.rq.abandoned"):
            _runs.describe(job, queue, state)
            started = _runs._timestamp(getattr(job, "started_at", None))
            _lifecycle.record_run(
                state.job_name, system=_attrs.SYSTEM, outcome=Outcome.LOST,
                action=Action.RETRY if state.requeued else Action.STOP,
                error_type="rq.exceptions.AbandonedJobError", job_id=job_id,
                attempt=state.attempt, queue=state.queue, started_at=started,
                producer=state.producer, kind=SpanKind.CONSUMER, attributes=state.attrs,
                framework_budget=state.budget, worker=getattr(job, "worker_name", None) or None,
            )  # fmt: skip
