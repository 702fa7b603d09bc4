"""Enforce mode keeps the retries that are worth making bounded and spaced out.

Poison runs are not retried at all (:mod:`._adapters`); every other failed run may
be, but never forever and never in a tight loop:

- **a bound**: the attempts a job gets are jobpulse's ``budgets`` option for it,
  else the framework's own bound (Celery ``max_retries + 1``, RQ's retries), else
  ``instrument(default_budget=...)``, else :attr:`Guardrails.max_attempts`. jobpulse
  only lowers a framework's bound, never raises it;
- **a delay**: a Celery retry that would be sent at once (``countdown`` 0 or none
  and no ``eta``) waits an exponential backoff with jitter instead, so a failing
  dependency is not hammered and a burst of failures does not retry in step.

Observe mode changes nothing. Every function here returns "no change" on its own
failure: a guardrail must never break the job.
"""

from __future__ import annotations

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


def backoff(retries: int) -> float:
    """Seconds to wait before a retry, after ``retries`` earlier retries.

    Equal jitter (half fixed, half random) rather than full jitter: full jitter can
    draw ~0, and an immediate retry is what this replaces.
    """
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** min(max(0, int(retries)), 30))
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


def celery_retry(
    task: Any, request: Any, run: JobRun | None, *, max_retries: Any, countdown: Any, eta: Any
) -> dict[str, Any] | None:
    """The ``Task.retry`` options to change in enforce mode (``max_retries``, ``countdown``);
    None: leave the call as it is."""
    with _guard.never_raise("guardrails.retry"):
        cfg = active()
        if run is None or not enforced(cfg, run):
            return None
        own = _whole(getattr(task, "max_retries", None) if max_retries is None else max_retries)
        framework = None if own is None else own + 1
        limit = attempt_limit(run, cfg, framework)
        change: dict[str, Any] = {}
        if framework is None or limit < framework:
            change["max_retries"] = limit - 1
        if countdown is None and not eta:
            countdown = getattr(task, "default_retry_delay", None)
        if not eta and not countdown:
            change["countdown"] = backoff(_whole(getattr(request, "retries", 0)) or 0)
        return change or None
    return None


def rq_retries(job: Any, run: JobRun | None) -> None:
    """Lower ``job.retries_left`` so the job stops at its jobpulse budget's ``max_attempts``
    (called before RQ decides on a retry)."""
    with _guard.never_raise("guardrails.retry"):
        if run is None or not enforced(active(), run):
            return
        left = _whole(getattr(job, "retries_left", None))
        limit = run.budget.max_attempts
        if not left or limit is None:
            return
        allowed = max(0, int(limit) - run.attempt)
        if allowed < left:
            job.retries_left = allowed
