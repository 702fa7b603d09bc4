"""Guardrails enforce mode where a Celery task runs: poison runs set aside, other
retries bounded.

``Task.retry`` is the one place ``autoretry_for`` and ``self.retry()`` both pass
through before the next attempt is sent, so jobpulse wraps it: in enforce mode a
poison run raises ``Reject(exc, requeue=False)`` instead of retrying, and any other
retry stays within the run's attempt budget, with a backoff instead of an immediate
retry (:mod:`jobpulse.guardrails._bounds`). A failed run Celery does not retry gets
its payload stored at ``task_postrun`` (:func:`quarantine_unretried`, called by
:mod:`._consumer`).

In observe mode, with the guardrails off, or on any failure of jobpulse's own, the
wrapper calls Celery's ``Task.retry`` with exactly the caller's arguments.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ... import _guard, _runtime
from ..._run import Outcome
from . import _outcome
from ._consumer import run_of

if TYPE_CHECKING:
    from ..._run import JobRun

_original_retry: Any = None
#: ``Task.retry``'s parameters after ``exc``, in order
_RETRY_PARAMS = ("throw", "eta", "countdown", "max_retries")
_OVERRIDE = "override_max_retries"  # what Task.retry leaves on the task for autoretry_for
_UNSET: Any = object()


def _message_request(task: Any) -> Any:
    """The task's request when it runs from a message (not eager, not called directly)."""
    request = task.request
    if request.is_eager or request.called_directly or request.id is None:
        return None
    return request


def _quarantine_instead(task: Any, exc: BaseException | None) -> BaseException | None:
    """The :class:`~._outcome.Quarantined` rejection to raise instead of retrying, when
    the guardrails (enforce mode) classify this failure as poison; None otherwise."""
    if exc is None or _runtime.get() is None:
        return None
    with _guard.never_raise("adapter.celery.guardrails"):
        request = _message_request(task)
        run = run_of(request)
        if run is None:
            return None
        from celery.utils.serialization import get_pickleable_exception

        from ...guardrails._adapters import celery_failed

        # the outcome and error.type the run's span will get (_outcome.classify of the
        # Retry), so the payload's fingerprint is the one the span and memory have
        outcome = Outcome.TIMEOUT if _outcome.soft_limit_in(exc) else Outcome.ERROR
        stored = celery_failed(
            task, request, run, exc, outcome=outcome.value, error_type=_outcome.error_type(exc)
        )
        if stored is None:
            return None
        # the pool sends the rejection to the main process: keep it picklable
        return _outcome.Quarantined(get_pickleable_exception(exc), requeue=False)
    return None


def quarantine_unretried(
    run: JobRun, outcome: Outcome, exc: BaseException, error_type: str | None
) -> None:
    """A failed run Celery does not retry (no ``autoretry_for``, no ``self.retry()``, or
    retries used up): in enforce mode a poison run's payload is stored as on the retry
    path, so it can be reviewed and released. Celery's result and ack stay its own: with
    ``acks_late`` and ``acks_on_failure=False`` Celery rejects the message without
    requeue (a dead-letter exchange gets it), see docs/guardrails.md."""
    if _runtime.get() is None:
        return
    with _guard.never_raise("adapter.celery.guardrails"):
        from ...guardrails._quarantine import enforced, handled
        from ...guardrails.config import active

        if not enforced(active(), run):
            return  # observe mode: nothing to look up
        from celery import current_task  # task_postrun runs before Celery pops the task

        from ...guardrails._adapters import celery_failed

        task = current_task._get_current_object()
        request = _message_request(task) if task is not None else None
        if request is None or str(request.id) != run.job_id or handled(run.run_id):
            return  # eager, another task's postrun, or already set aside by Task.retry
        celery_failed(task, request, run, exc, outcome=outcome.value, error_type=error_type)


def _bounded(
    task: Any, rest: tuple[Any, ...], options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``Task.retry``'s options (after ``exc``) as keywords, and what enforce mode
    changes in them (``max_retries``, ``countdown``); None: call it unchanged."""
    if _runtime.get() is None or len(rest) > len(_RETRY_PARAMS):
        return None
    with _guard.never_raise("adapter.celery.guardrails"):
        named = dict(zip(_RETRY_PARAMS, rest, strict=False))
        if named.keys() & options.keys():
            return None  # Celery's own TypeError, untouched
        named.update(options)
        request = _message_request(task)
        run = run_of(request)
        if run is None:
            return None
        from ...guardrails._bounds import celery_retry

        change = celery_retry(
            task, request, run, max_retries=named.get("max_retries"),
            countdown=named.get("countdown"), eta=named.get("eta"),
        )  # fmt: skip
        if change is None:
            return None
        return named, change
    return None


def _retry_capped(original: Any, task: Any, args: Any, kwargs: Any, exc: Any,
                  named: dict[str, Any], caller_max: Any) -> Any:  # fmt: skip
    """Call ``Task.retry`` with jobpulse's ``max_retries`` (Celery raises at once, before
    any I/O: see ``_bounds.celery_retry``), then leave ``override_max_retries`` as the
    caller's own call would have (``autoretry_for`` reuses it for later runs)."""
    prior = task.__dict__.get(_OVERRIDE, _UNSET)
    try:
        return original(task, args, kwargs, exc, **named)
    finally:
        with _guard.never_raise("adapter.celery.guardrails"):  # never replace the error
            if caller_max is not None:
                task.__dict__[_OVERRIDE] = caller_max
            elif prior is _UNSET:
                task.__dict__.pop(_OVERRIDE, None)
            else:
                task.__dict__[_OVERRIDE] = prior


def patch_retry() -> None:
    """Wrap ``Task.retry`` (also what ``autoretry_for`` calls), where the next attempt
    would be sent."""
    global _original_retry
    if _original_retry is not None:
        return
    from celery.app.task import Task

    original = Task.retry

    def retry(self: Any, args: Any = None, kwargs: Any = None, exc: Any = None,
              *rest: Any, **options: Any) -> Any:  # fmt: skip
        reject = _quarantine_instead(self, exc if exc is not None else sys.exc_info()[1])
        if reject is not None:
            raise reject
        bounded = _bounded(self, rest, options)
        if bounded is None:
            return original(self, args, kwargs, exc, *rest, **options)
        named, change = bounded
        if "max_retries" not in change:  # a backoff: Celery stores nothing on the task
            return original(self, args, kwargs, exc, **{**named, **change})
        return _retry_capped(
            original, self, args, kwargs, exc, {**named, **change}, named.get("max_retries")
        )

    retry.__wrapped__ = original  # type: ignore[attr-defined]
    retry.__doc__ = original.__doc__
    Task.retry = retry  # type: ignore[method-assign]
    _original_retry = original


def unpatch_retry() -> None:
    global _original_retry
    if _original_retry is None:
        return
    from celery.app.task import Task

    Task.retry = _original_retry  # type: ignore[method-assign]
    _original_retry = None
