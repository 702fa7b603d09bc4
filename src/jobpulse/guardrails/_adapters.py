"""Enforce mode in the framework adapters: one call each, at the moment the framework
is about to decide whether to retry.

RQ (``handle_exception`` runs before ``handle_job_failure`` decides on a retry)::

    from jobpulse.guardrails._adapters import rq_failed
    rq_failed(job, run, exc)

sets ``job.retries_left = 0`` (so RQ puts the job in its failed registry), puts
the operator payload in ``job.meta["jobpulse_quarantine"]`` and stores it (the
guardrails' Redis, else the job's own RQ connection). A failure that is not poison
keeps at most the retries its jobpulse budget allows (:mod:`._bounds`).

Celery (in the task's failure path, before ``autoretry_for``/``self.retry``
send the next attempt)::

    from jobpulse.guardrails._adapters import celery_failed
    if celery_failed(task, request, run, exc) is not None:
        raise celery.exceptions.Reject(exc, requeue=False)

stores the payload (with the task's name, queue, args and kwargs in the
store-only ``release`` section, so ``jobpulse quarantine release`` can re-send it
with the same task id) and returns the payload: the adapter then rejects the
message without requeue, so a dead-letter exchange, if configured, gets it. The
adapter makes the same call at the end of a failed run Celery does not retry (no
``autoretry_for``, no ``self.retry()``): the payload is stored the same way, and
Celery's own result and ack stand.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import _guard
from ._bounds import rq_retries
from ._quarantine import (
    Payload,
    RedisStore,
    enforced,
    quarantine,
    should_quarantine,
    store_for,
)
from ._release import RQ_META_KEY
from .config import active, redis_client

if TYPE_CHECKING:
    from .._run import JobRun


def _rq_outcome(exc: BaseException | None) -> str:
    try:
        from ..adapters.rq import _runs

        if exc is not None and isinstance(exc, _runs.TIMEOUTS):
            return "timeout"
    except Exception:  # noqa: BLE001 - the adapter's internals moved: an error, then
        pass
    return "error"


def rq_failed(job: Any, run: JobRun | None, exc: BaseException | None) -> Payload | None:
    """Enforce mode for one failed RQ attempt; returns the payload when quarantined."""
    with _guard.never_raise("guardrails.rq"):
        if not enforced(active(), run):
            return None  # observe mode: no arguments to deserialise, no retries to bound
        from ..autodeps import internal

        try:
            args, kwargs = tuple(job.args), dict(job.kwargs)
        except Exception:  # noqa: BLE001 - undeserialisable: no input fingerprint
            args, kwargs = (), {}
        payload = should_quarantine(
            run,
            exc,
            job_id=job.id,
            queue=job.origin,
            outcome=_rq_outcome(exc),
            args=args,
            kwargs=kwargs,
            release={"job_id": job.id, "queue": job.origin},
        )
        if payload is None:
            rq_retries(job, run)  # not poison: retries stay within the job's budget
            return None
        job.retries_left = 0
        job.meta[RQ_META_KEY] = payload.public()
        with internal():
            job.save_meta()
        cfg = active()
        store = (
            store_for(cfg)
            if cfg.store is not None or redis_client(cfg) is not None
            else RedisStore(job.connection)
        )
        return quarantine(payload, store)
    return None


def _jsonable(value: Any) -> Any:
    """``value`` if it can be stored as JSON (to re-send the task on release), else None."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    return value


def celery_failed(
    task: Any,
    request: Any,
    run: JobRun | None,
    exc: BaseException | None,
    *,
    outcome: str = "error",
    error_type: str | None = None,
) -> Payload | None:
    """Enforce mode for one failed Celery attempt: the payload, stored, when it is poison.

    From the ``Task.retry`` wrapper a payload means: reject, no requeue. From the end of
    a run Celery does not retry, the stored payload is all (Celery acks or rejects it).
    ``outcome``/``error_type``: as the adapter records the run (Celery's names for
    billiard's exceptions), so the payload, the span and the attempt memory agree.
    """
    with _guard.never_raise("guardrails.celery"):
        cfg = active()
        if not cfg.classify or not enforced(cfg, run):
            return None  # observe mode: nothing to store, so nothing to encode
        args = list(getattr(request, "args", None) or ())
        kwargs = dict(getattr(request, "kwargs", None) or {})
        delivery = getattr(request, "delivery_info", None) or {}
        queue = delivery.get("routing_key") or getattr(request, "queue", None) or ""
        release: dict[str, Any] = {"task": getattr(task, "name", None), "queue": queue}
        options = {
            k: delivery[k]
            for k in ("exchange", "routing_key", "priority")
            if delivery.get(k) not in (None, "")
        }
        if options:
            release["options"] = options
        body_args, body_kwargs = _jsonable(args), _jsonable(kwargs)
        if body_args is not None and body_kwargs is not None:
            release["args"], release["kwargs"] = body_args, body_kwargs
        payload = should_quarantine(
            run,
            exc,
            job_id=getattr(request, "id", None),
            queue=queue,
            attempt=int(getattr(request, "retries", 0) or 0) + 1,
            outcome=outcome,
            error_type=error_type,
            args=args,
            kwargs=kwargs,
            release=release,
        )
        if payload is None:
            return None
        return quarantine(payload)
    return None
