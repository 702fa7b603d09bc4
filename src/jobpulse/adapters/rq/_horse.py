"""The forking ``Worker``: a work horse per job, and the parent that outlives it.

The horse traces the run (spans, steps, heartbeats) but records no counters:
it ends with ``os._exit`` after one job. Before exiting it

* writes one line to a pipe the parent opened before the fork: the job name
  and what it recorded (outcome, action, error type, duration, queue wait),
  so the parent counts the run in its own long-lived metrics, with no metrics
  export in the job's path;
* flushes its spans and logs, bounded by ``flush_timeout``. Metrics are
  flushed too only for a run that outlived one metric export interval: its
  gauges (active, stalled) were exported, so their final 0 must be.

A horse that never writes its line did not finish its run: the parent records
it from RQ's verdict: ``cancelled`` (stopped on request), ``timeout`` (killed
by the parent past ``job_timeout + 60`` s) or ``lost`` (SIGKILL, OOM, crash).
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from opentelemetry.trace import SpanKind

from ... import _guard, _lifecycle, _otel, _runtime
from ..._run import Action, Outcome
from . import _attrs, _handoff, _runs

#: grace RQ gives a horse past its timeout before the parent kills it
KILL_GRACE = 60.0


_F_SETPIPE_SZ = 1031  # Linux fcntl commands (not in the fcntl module before 3.10 on all builds)
_F_GETPIPE_SZ = 1032
PIPE_SIZE = 1 << 20
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def open_pipe() -> tuple[int, int]:
    """A pipe from the horse to the parent: the parent reads it once the horse is gone,
    so the horse must never fill it (it would block forever): 1 MiB where Linux allows."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    try:
        import fcntl

        fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError):
        pass
    return read, write


def capacity(fd: int) -> int:
    try:
        import fcntl

        return int(fcntl.fcntl(fd, _F_GETPIPE_SZ))
    except (ImportError, OSError):
        return 65536


def close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def send_report(
    fd: int, job_name: str, result: Any, wait: float | None, handoff: _handoff.Handoff | None
) -> bool:
    """Write the report (with what the horse handed off). False when the horse must
    flush its own pipeline."""
    outcome, action, error_type, duration = result
    report = [job_name, outcome.value, action.value, error_type, duration, wait]
    spans, records, metrics = handoff.take() if handoff is not None else (None, None, [])
    room = capacity(fd) - 1024
    data = pickle.dumps({"r": report, "s": spans, "l": records, "m": metrics}, _PROTOCOL)
    if len(data) > room and spans is not None:
        assert handoff is not None
        assert records is not None
        handoff.give_back(spans, records)
        spans = records = None
        data = pickle.dumps({"r": report, "s": None, "l": None, "m": metrics}, _PROTOCOL)
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return spans is not None and not (handoff is not None and handoff.foreign_logs)


def read_report(fd: int) -> dict[str, Any] | None:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return None
    found = pickle.loads(b"".join(chunks))
    if not isinstance(found, dict) or not isinstance(found.get("r"), list):
        return None
    return found


def flush(rt: _runtime.Runtime, run_seconds: float | None) -> None:
    """Export the horse's spans and logs before ``os._exit`` (bounded)."""
    timeout = rt.settings.flush_timeout
    if run_seconds is not None and run_seconds * 1000 >= _otel._metric_interval_ms():
        rt.flush(timeout)
        return
    providers = rt.providers
    millis = int(timeout * 1000)

    def flush_traces_and_logs() -> None:
        for provider in (providers.tracer_provider, providers.logger_provider):
            fn = getattr(provider, "force_flush", None)
            if fn is not None:
                fn(millis)

    _otel.run_bounded(flush_traces_and_logs, timeout, "adapter.rq.flush")


def count(report: list[Any], queue: str, job_id: str, run_id: str | None, attempt: int) -> None:
    """Count, in the parent, a run its horse recorded."""
    name, outcome, action, error_type, duration, wait = report
    _lifecycle.count_run(
        str(name), system=_attrs.SYSTEM, queue=queue, outcome=outcome, action=action,
        error_type=error_type, duration=duration, queue_wait=wait, job_id=job_id,
        run_id=run_id, attempt=attempt,
    )  # fmt: skip


def record_unreported(
    worker: Any, job: Any, queue: Any, state: _runs.RunState, started_at: float,
    run_id: str | None, signal: int | None,
) -> None:  # fmt: skip
    """The horse ended without reporting: record the run from RQ's verdict."""
    _runs.describe(job, queue, state)
    status = job.get_status(refresh=False)
    if status == _runs.STOPPED:
        outcome, action = Outcome.CANCELLED, Action.NONE
    else:
        timeout = getattr(job, "timeout", None)
        killed_late = (
            isinstance(timeout, (int, float))
            and timeout > 0
            and time.time() - started_at >= timeout + KILL_GRACE
        )
        outcome = Outcome.TIMEOUT if killed_late else Outcome.LOST
        action = Action.RETRY if status in _runs.REQUEUED else Action.STOP
    attrs = dict(state.attrs)
    if signal is not None:
        attrs["rq.work_horse.signal"] = signal
    # the run span this worker started before the fork, if it did: its trace has the
    # run started line, and whatever the horse exported before it died
    begun = _runs.take_begun_span(state)
    _lifecycle.record_run(
        state.job_name, system=_attrs.SYSTEM, outcome=outcome, action=action,
        job_id=job.id, run_id=run_id, attempt=state.attempt, queue=state.queue,
        started_at=started_at, producer=state.producer, kind=SpanKind.CONSUMER,
        attributes=attrs, framework_budget=state.budget, worker=getattr(worker, "name", None),
        span=begun,
    )  # fmt: skip


def record_fork_failure(worker: Any, job: Any, run_id: str | None, exc: BaseException) -> None:
    """The worker could not fork the horse of a run it started: the job never ran.

    Nobody else records it. RQ marks a job ``started`` in the horse, so its
    started-registry cleanup (and jobpulse's ``lost`` record there) skips it,
    and RQ fails it later from its intermediate queue, retrying it if it has
    retries left. Recorded here the same way: an ``error`` with the fork's
    exception, on the run span begun before the fork."""
    with _guard.never_raise("adapter.rq.fork"):
        state = _runs.active.get(job.id)
        run = state.run if state is not None else None
        if state is None or run is None or _runs.take_begun_span(state) is None:
            return
        retries = getattr(job, "retries_left", None)
        action = Action.RETRY if isinstance(retries, int) and retries > 0 else Action.STOP
        _lifecycle.record_run(
            state.job_name, system=_attrs.SYSTEM, outcome=Outcome.ERROR, action=action,
            exc=exc, job_id=job.id, run_id=run_id, attempt=state.attempt, queue=state.queue,
            started_at=run.started_at, producer=state.producer, kind=SpanKind.CONSUMER,
            attributes=state.attrs, framework_budget=state.budget,
            worker=getattr(worker, "name", None), span=run.span,
        )  # fmt: skip


def record_spawned(
    worker: Any, job: Any, queue: Any, state: _runs.RunState, started_at: float,
    run_id: str | None,
) -> None:  # fmt: skip
    """A ``SpawnWorker`` horse is a fresh interpreter jobpulse does not run in: the
    parent records the run from the status RQ saved."""
    with _guard.never_raise("adapter.rq.spawned"):
        status = job.get_status(refresh=True)
        if status == _runs.FINISHED:
            _runs.describe(job, queue, state)
            _lifecycle.record_run(
                state.job_name, system=_attrs.SYSTEM, outcome=Outcome.SUCCESS,
                action=Action.NONE, job_id=job.id, run_id=run_id, attempt=state.attempt,
                queue=state.queue, started_at=started_at, producer=state.producer,
                attributes=state.attrs, framework_budget=state.budget,
                worker=getattr(worker, "name", None),
            )  # fmt: skip
            return
        if status == "failed" or status in _runs.REQUEUED:
            _runs.describe(job, queue, state)
            action = Action.RETRY if status in _runs.REQUEUED else Action.STOP
            _lifecycle.record_run(
                state.job_name, system=_attrs.SYSTEM, outcome=Outcome.ERROR, action=action,
                job_id=job.id, run_id=run_id, attempt=state.attempt, queue=state.queue,
                started_at=started_at, producer=state.producer, attributes=state.attrs,
                framework_budget=state.budget, worker=getattr(worker, "name", None),
            )  # fmt: skip
            return
        record_unreported(worker, job, queue, state, started_at, run_id, None)
