"""RQ: every job run becomes a run span, counted once, on forking and simple workers.

Installed when ``rq`` is imported (now, if it already is). Producer side:
``Queue.enqueue*`` makes a PRODUCER span ``send {job}`` and stores its trace
context and the enqueue time in ``job.meta["jobpulse"]``. Worker side: each
attempt is a CONSUMER run span in a new trace, linked to the enqueue (and to
the previous attempt), with RQ's ``job_timeout`` as ``max_runtime`` and its
retries as ``max_attempts``. The forking ``Worker`` starts the run span just
before it forks the horse, the horse makes it current, ends it and hands its
spans to the worker, which counts the run (see :mod:`._horse`).

jobpulse uses no signal (RQ's death penalty owns SIGALRM) and changes no RQ
registry, status or result; it only adds its entry to a job's meta before
RQ saves the job. ``uninstall()`` puts every RQ method back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import _guard
from . import _attrs, _cleanup, _deps, _producer, _runs, _worker
from ._patch import Patches

if TYPE_CHECKING:
    from ..._runtime import Runtime


class RQAdapter:
    name = "rq"
    framework = "rq"

    def __init__(self) -> None:
        self._patches = Patches()

    def install(self, runtime: Runtime) -> None:
        if self._patches:
            return
        import rq.job
        import rq.queue
        import rq.registry
        import rq.serializers
        import rq.worker
        from rq.exceptions import ShutDownImminentException, StopRequested
        from rq.timeouts import BaseTimeoutException, JobTimeoutException

        # RQ raises these asynchronously (death penalty, signal handlers): they may
        # surface inside jobpulse code and must pass through it untouched.
        _guard.add_passthrough(BaseTimeoutException, StopRequested, ShutDownImminentException)
        _runs.TIMEOUTS = (JobTimeoutException,)
        _runs.SHUTDOWNS = (ShutDownImminentException,)
        _runs.RETRY_TYPE = getattr(rq.job, "Retry", None)
        _attrs.PICKLE = getattr(rq.serializers, "DefaultSerializer", None)
        spawn = getattr(rq.worker, "SpawnWorker", None)
        _worker.SPAWN_TYPES = (spawn,) if isinstance(spawn, type) else ()

        _deps.load()
        p = self._patches
        try:
            p.wrap(rq.job.Job, "_execute", _deps.job_execute)
            queue = rq.queue.Queue
            p.wrap(queue, "create_job", _producer.create_job)
            for entry in ("enqueue_call", "enqueue_at", "enqueue_many"):
                p.wrap(queue, entry, _producer.entry_point)
            p.wrap(queue, "enqueue_job", _producer.enqueue_job)
            p.wrap(queue, "schedule_job", _producer.schedule_job)
            p.wrap(queue, "_enqueue_job", _producer.enqueue_saved)

            base = rq.worker.BaseWorker
            p.wrap(base, "perform_job", _worker.perform_job)
            p.wrap(base, "handle_exception", _worker.handle_exception)
            p.wrap(base, "handle_work_horse_killed", _worker.handle_work_horse_killed)
            p.wrap(base, "prepare_execution", _worker.prepare_execution)
            p.wrap(base, "bootstrap", _worker.bootstrap)
            p.wrap(base, "teardown", _worker.teardown)
            p.wrap(rq.worker.Worker, "execute_job", _worker.execute_job)
            p.wrap(rq.worker.Worker, "fork_work_horse", _worker.fork_work_horse)

            started = rq.registry.StartedJobRegistry
            p.wrap(started, "cleanup", _cleanup.cleanup)
            _cleanup.STARTED = started
            for cls in started.__mro__:  # defined on BaseRegistry in rq 2.x and 3.x
                if p.wrap(cls, "get_expired_job_ids", _cleanup.get_expired_job_ids):
                    break
        except BaseException:
            p.restore()
            raise

    def uninstall(self) -> None:
        self._patches.restore()
        _runs.active.clear()


ADAPTER = RQAdapter()
