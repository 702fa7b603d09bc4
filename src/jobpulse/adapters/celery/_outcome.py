"""How a Celery task's end maps to the contract's outcome and action.

One function, :func:`classify`, used by the pool child (from the task state and
exception) and by the main worker process (from the exception the child sent
back), so a run's span and its metrics agree.
"""

from __future__ import annotations

from celery import states
from celery.exceptions import (
    Ignore,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    Terminated,
    TimeLimitExceeded,
    WorkerLostError,
)
from celery.utils.serialization import UnpickleableExceptionWrapper

from ..._run import Action, BudgetExceeded, Outcome
from ..._textsafe import error_type_of

#: billiard defines these; Celery users know them by their celery.exceptions name.
_CELERY_NAMES: dict[type[BaseException], str] = {
    cls: f"celery.exceptions.{cls.__name__}"
    for cls in (SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError, Terminated)
}


class Quarantined(Reject):  # type: ignore[misc]
    """The guardrails' ``Reject(exc, requeue=False)`` for a poison run (enforce mode):
    Celery handles it as any rejection without requeue (FAILURE result, a dead-letter
    exchange gets the message); jobpulse records it as ``error``/``quarantine`` with
    the task's own exception (``reason``)."""


def _gevent(name: str) -> tuple[type[BaseException], ...]:
    """gevent's ``Timeout``/``GreenletExit`` when gevent is loaded (the gevent pool)."""
    import sys

    module = sys.modules.get("gevent")
    found = getattr(module, name, None) if module is not None else None
    return (found,) if isinstance(found, type) and issubclass(found, BaseException) else ()


def hard_limit_in_greenlet(exc: BaseException | None) -> bool:
    """The gevent pool's hard time limit: ``gevent.Timeout`` raised into the task."""
    return exc is not None and isinstance(exc, _gevent("Timeout"))


def killed_greenlet(exc: BaseException | None) -> bool:
    """The gevent pool's ``revoke(terminate=True)``: the task's greenlet was killed."""
    return exc is not None and isinstance(exc, _gevent("GreenletExit"))


Verdict = tuple[Outcome, Action, "BaseException | None", "str | None"]
SUCCESS: Verdict = (Outcome.SUCCESS, Action.NONE, None, None)


def error_type(exc: BaseException) -> str:
    """``error.type``: the qualified class name, the way Celery users spell it."""
    name = _CELERY_NAMES.get(type(exc))
    if name is not None:
        return name
    if isinstance(exc, UnpickleableExceptionWrapper):  # the parent's view of an odd exception
        module, cls = exc.exc_module, exc.exc_cls_name
        return str(cls) if module in ("builtins", "__main__", "", None) else f"{module}.{cls}"
    return error_type_of(exc)


def soft_limit_in(exc: BaseException | None) -> bool:
    """A time limit caused this exception (raised it, or was being handled): Celery's
    soft time limit, or jobpulse's enforced budget."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, (SoftTimeLimitExceeded, BudgetExceeded)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def classify(
    exc: BaseException | None, *, state: str | None = None, soft_fired: bool = False
) -> Verdict:
    """(outcome, action, exception to record, error.type) for how a task ended.

    ``state`` is the child's task state when known (``task_postrun``); the parent
    passes ``soft_fired`` when the soft time limit fired during the run.
    """
    if state == states.SUCCESS or exc is None:
        return SUCCESS
    if isinstance(exc, Retry):  # another attempt is scheduled: error with the retried type
        inner = exc.exc if isinstance(exc.exc, BaseException) else None
        timed_out = soft_limit_in(inner) or (soft_fired and inner is not None)
        return (
            Outcome.TIMEOUT if timed_out else Outcome.ERROR,
            Action.RETRY,
            inner or exc,
            error_type(inner or exc),
        )
    if isinstance(exc, Quarantined):  # guardrails enforce mode: the run failed, poison
        inner = exc.reason if isinstance(exc.reason, BaseException) else None
        return Outcome.ERROR, Action.QUARANTINE, inner or exc, error_type(inner or exc)
    if isinstance(exc, Reject):
        return Outcome.CANCELLED, Action.RETRY if exc.requeue else Action.STOP, None, None
    if isinstance(exc, Ignore):
        return Outcome.CANCELLED, Action.NONE, None, None
    if isinstance(exc, TimeLimitExceeded) or soft_limit_in(exc) or soft_fired:
        return Outcome.TIMEOUT, Action.STOP, exc, error_type(exc)
    if hard_limit_in_greenlet(exc):  # Celery reports it as TimeLimitExceeded
        return Outcome.TIMEOUT, Action.STOP, exc, _CELERY_NAMES[TimeLimitExceeded]
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return Outcome.CANCELLED, Action.NONE, None, None
    return Outcome.ERROR, Action.STOP, exc, error_type(exc)
