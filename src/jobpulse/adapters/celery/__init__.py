"""Celery: every task run gets the contract's run span, metrics and logs.

Installed when ``celery`` is imported (or at once, if it already is). Hooks,
all removed by ``uninstall()``:

* producer side (:mod:`._producer`): ``before_task_publish``/``after_task_publish``;
* where the task runs (:mod:`._consumer`): ``task_prerun``/``task_postrun``, and
  (:mod:`._retry`) ``Task.retry`` (guardrails enforce mode: a poison run is
  rejected, not retried; other retries bounded);
* the worker's main process (:mod:`._requests`): each task's Request class, through
  ``celery.worker.strategy.create_request_cls``, and ``task_revoked``;
* the worker's lifecycle (:mod:`._worker`): ``worker_init``/``worker_ready``/
  ``worker_shutdown``, ``worker_process_init``/``worker_process_shutdown``;
* living with opentelemetry-instrumentation-celery: :mod:`._coexist`.

Nothing changes how Celery behaves (receivers only read; results, acks,
retries and time limits are Celery's own), except in guardrails enforce mode: a
poison run's retry becomes ``Reject(exc, requeue=False)``, and other retries are
bounded (``max_retries`` at most the attempt budget, a backoff instead of an
immediate retry). See ``docs/celery.md`` and ``docs/guardrails.md``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ... import _guard

if TYPE_CHECKING:
    from ..._runtime import Runtime

PRERUN_UID = "jobpulse.celery.task_prerun"
POSTRUN_UID = "jobpulse.celery.task_postrun"


def _receivers() -> list[tuple[Any, Any, str]]:
    from celery import signals

    from . import _consumer, _producer, _requests, _worker

    return [
        (signals.before_task_publish, _producer.before_publish, "jobpulse.celery.before_publish"),
        (signals.after_task_publish, _producer.after_publish, "jobpulse.celery.after_publish"),
        (signals.task_prerun, _consumer.on_prerun, PRERUN_UID),
        (signals.task_postrun, _consumer.on_postrun, POSTRUN_UID),
        (signals.task_revoked, _requests.on_revoked, "jobpulse.celery.task_revoked"),
        (signals.worker_init, _worker.on_worker_init, "jobpulse.celery.worker_init"),
        (signals.worker_ready, _worker.on_worker_ready, "jobpulse.celery.worker_ready"),
        (signals.worker_shutdown, _worker.on_worker_shutdown, "jobpulse.celery.worker_shutdown"),
        (signals.worker_process_init, _worker.on_process_init, "jobpulse.celery.process_init"),
        (
            signals.worker_process_shutdown,
            _worker.on_process_shutdown,
            "jobpulse.celery.process_shutdown",
        ),
    ]


class CeleryAdapter:
    """Its modules import Celery, so they load at install: an RQ worker that has Celery
    installed must not carry Celery in memory (every work horse forks it)."""

    name = "celery"
    framework = "celery"

    def __init__(self) -> None:
        self._installed = False

    def install(self, runtime: Runtime) -> None:
        if self._installed:
            return
        from celery.exceptions import SoftTimeLimitExceeded

        from . import _process, _requests, _retry, _worker

        # The soft time limit is raised asynchronously, possibly inside jobpulse code:
        # it is the task's, and must pass through untouched.
        _guard.add_passthrough(SoftTimeLimitExceeded)
        for signal, receiver, uid in _receivers():
            signal.connect(receiver, weak=False, dispatch_uid=uid)
        _process.ACTIVE = True
        self._installed = True
        _retry.patch_retry()  # guardrails enforce mode: no retry for a poison run
        if "celery.worker.strategy" in sys.modules:  # else at worker_init
            _requests.patch_strategy()
        _worker.keep_order()

    def uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        from . import _consumer, _process, _producer, _requests, _retry, _worker

        _process.ACTIVE = False
        for signal, receiver, uid in _receivers():
            signal.disconnect(receiver, dispatch_uid=uid)
        _requests.unpatch_strategy()
        _retry.unpatch_retry()
        _worker.drop_capacity()
        _producer.clear()
        _consumer.clear()

    @property
    def installed(self) -> bool:
        return self._installed


ADAPTER = CeleryAdapter()

__all__ = ["ADAPTER", "CeleryAdapter"]
