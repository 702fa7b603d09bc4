"""Enforce mode keeps the retries that are worth making bounded and spaced out.

Poison runs are not retried at all (:mod:`._adapters`); every other failed run may
be, but never forever and never in a tight loop:

- **a bound**: the attempts a job gets are jobpulse's ``budgets`` option for it,
  else the framework's own bound (Celery ``max_retries + 1``, RQ's retries), else
  ``instrument(default_budget=...)``, else :attr:`Guardrails.max_attempts`. jobpulse
  only lowers a framework's bound, never raises it;
- **a delay**: a Celery retry that would be sent at once (``countdown`` 0 or none
  and no ``eta``) waits an exponential backoff with jitter instead (capped at the
  task's ``retry_backoff_max`` when it uses ``retry_backoff``), so a failing
  dependency is not hammered and a burst of failures does not retry in step.

Observe mode changes nothing. Every function here returns "no change" on its own
failure: a guardrail must never break the job.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import TYPE_CHECKING, Any

from .. import _guard, _runtime
from ._quarantine import enforced
from .config import Guardrails, active

if TYPE_CHECKING:
    from .._run import JobRun

#: backoff before retry ``n`` (0-based): at most ``min(BACKOFF_MAX, BACKOFF_BASE * 2**n)``
#: seconds, at least half of it (the other half is random)
BACKOFF_BASE = 1.0
BACKOFF_MAX = 600.0


def backoff(retries: int, maximum: float = BACKOFF_MAX) -> float:
    """Seconds to wait before a retry, after ``retries`` earlier retries.

    Equal jitter (half fixed, half random) rather than full jitter: full jitter can
    draw ~0, and an immediate retry is what this replaces. ``maximum`` caps the
    ceiling (a task's own ``retry_backoff_max``).
    """
    exponent = min(max(0, int(retries)), 30)
    ceiling = max(0.0, min(BACKOFF_MAX, maximum, BACKOFF_BASE * 2.0**exponent))
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)


def attempt_limit(run: JobRun, cfg: Guardrails, framework: int | None) -> int:
    """How many attempts ``run``'s job gets in enforce mode (the first included).

    ``framework``: the framework's own bound as it stands now (None: unbounded).
    """
    rt = _runtime.get()
    configured = rt.settings.budget_for(run.job_name) if rt is not None else None
    if configured is not None and configured.max_attempts is not None:
        return max(1, int(configured.max_attempts))
    if framework is not None:
        return max(1, framework)
    default = rt.settings.default_budget if rt is not None else None
    if default is not None and default.max_attempts is not None:
        return max(1, int(default.max_attempts))
    return cfg.max_attempts


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


_UNREADABLE: Any = object()


def _celery_bound(max_retries: Any) -> Any:
    """The retries Celery allows for ``max_retries`` (None: unbounded), or ``_UNREADABLE``.

    Celery stops when ``retries > max_retries``, so any finite number >= 0 is a bound
    (``3.0`` is 3, ``2.5`` is 2), and infinity is no bound at all. Anything else
    (negative, NaN, not a number) is a value jobpulse does not second-guess: the call
    is left as it is rather than given a bound Celery would not have had.
    """
    if max_retries is None:
        return None
    if isinstance(max_retries, bool) or not isinstance(max_retries, numbers.Real):
        return _UNREADABLE
    value = float(max_retries)
    if math.isnan(value) or value < 0:
        return _UNREADABLE
    return None if math.isinf(value) else math.floor(value)


def _backoff_max(task: Any) -> float:
    """The task's own ``retry_backoff_max`` when it asked for ``retry_backoff`` (its
    autoretry countdowns stay under it, and so must jobpulse's), else ``BACKOFF_MAX``."""
    if not getattr(task, "retry_backoff", False):
        return BACKOFF_MAX
    value = getattr(task, "retry_backoff_max", None)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return BACKOFF_MAX
    cap = float(value)
    return cap if cap >= 0 else BACKOFF_MAX  # NaN and negatives: not a cap


def celery_retry(
    task: Any, request: Any, run: JobRun | None, *, max_retries: Any, countdown: Any, eta: Any
) -> dict[str, Any] | None:
    """The ``Task.retry`` options to change in enforce mode; None: leave the call as it is.

    ``max_retries`` is passed only on the attempt that must not be retried (the attempt
    budget is used up, and Celery's own bound would allow more): Celery then raises the
    task's exception before it sends anything, so the value it stores on the task
    (``override_max_retries``) lives only for that call. Otherwise an immediate retry
    gets a ``countdown`` (the backoff).
    """
    with _guard.never_raise("guardrails.retry"):
        cfg = active()
        if run is None or not enforced(cfg, run):
            return None
        bound = _celery_bound(getattr(task, "max_retries", None) if max_retries is None
                              else max_retries)  # fmt: skip
        if bound is _UNREADABLE:
            return None
        framework = None if bound is None else bound + 1
        limit = attempt_limit(run, cfg, framework)
        retries = _whole(getattr(request, "retries", 0)) or 0
        if (framework is None or limit < framework) and retries >= limit - 1:
            return {"max_retries": limit - 1}  # retries + 1 > limit - 1: Celery raises
        if countdown is None and not eta:
            countdown = getattr(task, "default_retry_delay", None)
        if eta or countdown:
            return None
        delay = backoff(retries, _backoff_max(task))
        return {"countdown": delay} if delay > 0 else None
    return None


def _keep_intervals(job: Any, left: int, allowed: int) -> None:
    """Trim ``job.retry_intervals`` to the ``allowed`` intervals the next retries would
    have had: RQ picks a retry's delay as ``intervals[len(intervals) - retries_left]``
    (at least index 0), so lowering ``retries_left`` alone would skip to later ones."""
    intervals = getattr(job, "retry_intervals", None)
    if allowed < 1 or not isinstance(intervals, list) or not intervals:
        return
    start = len(intervals) - left
    job.retry_intervals = [intervals[max(0, start + k)] for k in range(allowed)]


def rq_retries(job: Any, run: JobRun | None) -> None:
    """Lower ``job.retries_left`` so the job stops at its jobpulse budget's ``max_attempts``
    (called before RQ decides on a retry); the retries left keep their intervals."""
    with _guard.never_raise("guardrails.retry"):
        if run is None or not enforced(active(), run):
            return
        left = _whole(getattr(job, "retries_left", None))
        limit = run.budget.max_attempts
        if not left or limit is None:
            return
        allowed = max(0, int(limit) - run.attempt)
        if allowed < left:
            _keep_intervals(job, left, allowed)
            job.retries_left = allowed
