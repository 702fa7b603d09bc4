"""The human review path: release a quarantined job (re-enqueue it) or drop it.

Release keeps the job's original id, which is also its dedupe key:

- RQ: the job (still in Redis, in RQ's failed registry) is requeued with
  ``Job.requeue()``; jobpulse's ``meta["jobpulse_quarantine"]`` is removed first.
- Celery: the task is sent again by name with the same task id, to the same queue,
  with the arguments kept in the payload's store-only ``release`` section.
- in-process jobs (``function``, ``asyncio``): there is no queue to put them back
  on; the entry is marked released and the caller re-runs the job.

Either way the job id's attempt history is forgotten (a fresh start), and the
action is logged in the store's log and on the ``jobpulse`` logger.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _names as n
from . import memory
from ._quarantine import QUARANTINED, RELEASED, Payload, QuarantineStore, store_for

_log = logging.getLogger(n.LOGGER_NAME)
RQ_META_KEY = "jobpulse_quarantine"


class ReleaseError(RuntimeError):
    """The job could not be re-enqueued; the entry stays quarantined."""


def _log_action(store: QuarantineStore, action: str, payload: Payload, detail: str) -> None:
    store.log(action, payload, detail=detail)
    _log.warning(
        "quarantine: %s %s (%s): %s",
        action,
        payload.id,
        payload.job,
        detail,
        extra={n.JOB_NAME: payload.job, n.JOB_ID: payload.job_id},
    )


def _release_rq(payload: Payload, connection: Any) -> str:
    if connection is None:
        raise ReleaseError("an RQ job needs the RQ Redis connection (--rq-redis URL)")
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job

    from ..autodeps import internal

    job_id = (payload.release or {}).get("job_id") or payload.job_id
    with internal():
        try:
            job = Job.fetch(job_id, connection=connection)
        except NoSuchJobError:
            raise ReleaseError(f"RQ job {job_id} no longer exists in Redis") from None
        if RQ_META_KEY in job.meta:
            job.meta.pop(RQ_META_KEY, None)
            job.save_meta()  # type: ignore[no-untyped-call]
        try:
            job.requeue()
        except InvalidJobOperation:
            raise ReleaseError(f"RQ job {job_id} is not in the failed job registry") from None
    return f"requeued RQ job {job_id} on queue {job.origin}"


def _release_celery(payload: Payload, app: Any, broker: str | None) -> str:
    release = payload.release or {}
    task = release.get("task") or payload.job
    if "args" not in release and "kwargs" not in release:
        raise ReleaseError(
            "the task's arguments were not stored with the payload; re-send it by hand "
            f"(task {task}, id {payload.job_id})"
        )
    if app is None:
        if not broker:
            raise ReleaseError("a Celery task needs the broker URL (--broker URL)")
        from celery import Celery

        app = Celery("jobpulse-release", broker=broker)
    options = dict(release.get("options") or {})
    queue = release.get("queue") or payload.queue or None
    if queue:
        options.setdefault("queue", queue)
    app.send_task(
        task,
        args=list(release.get("args") or ()),
        kwargs=dict(release.get("kwargs") or {}),
        task_id=payload.job_id,
        **options,
    )
    return f"re-sent Celery task {task} with id {payload.job_id} to queue {queue or 'default'}"


def release(
    qid: str,
    store: QuarantineStore | None = None,
    *,
    rq_connection: Any = None,
    celery_app: Any = None,
    broker: str | None = None,
) -> Payload:
    """Re-enqueue a quarantined job with its original id; returns the updated payload.

    Raises :class:`ReleaseError` (and leaves the entry quarantined) when it cannot.
    """
    store = store_for() if store is None else store
    payload = store.get(qid)
    if payload is None:
        raise ReleaseError(f"no quarantined job with id {qid!r}")
    if payload.status != QUARANTINED:
        raise ReleaseError(f"{qid} is {payload.status}, not quarantined")
    if payload.system == "rq":
        detail = _release_rq(payload, rq_connection)
    elif payload.system == "celery":
        detail = _release_celery(payload, celery_app, broker)
    else:
        detail = (
            f"{payload.system} job: nothing to re-enqueue; marked released, run it again "
            "from your code"
        )
    client = getattr(store, "client", None)
    memory.forget(payload.job_id, client=client)
    payload.status = RELEASED
    store.save(payload)
    _log_action(store, "release", payload, detail)
    return payload


def drop(qid: str, store: QuarantineStore | None = None) -> Payload:
    """Delete a quarantined entry for good (the job is not re-run). Logged."""
    store = store_for() if store is None else store
    payload = store.get(qid)
    if payload is None:
        raise ReleaseError(f"no quarantined job with id {qid!r}")
    store.delete(qid)
    _log_action(store, "drop", payload, "entry deleted; the job will not run again")
    return payload
