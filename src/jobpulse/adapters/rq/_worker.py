"""Hooks on RQ's workers: where a run starts and ends, who counts it, capacity.

* ``perform_job`` (every worker class, in the process that runs the job):
  the run span. In a work horse it records no counters (``record_metrics=False``),
  reports to the parent and flushes before ``os._exit``.
* ``Worker.execute_job`` (the forking worker's parent): opens the report pipe
  before the fork, counts the run after the horse is gone, or records it
  when the horse died without reporting.
* ``handle_exception``: the exception RQ handled for the job (the job's own,
  a failing callback's, or RQ's ``JobTimeoutException``).
* ``bootstrap``/``teardown``: ``jobpulse.worker.capacity`` = 1 for each queue
  the worker consumes, while it works.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ... import _guard, _otel, _runtime
from ...guardrails._adapters import rq_failed
from . import _attrs, _deps, _fork, _handoff, _horse, _runs

_EXEC_ID = "_jobpulse_execution_id"
_REPORT_FD = "_jobpulse_report_fd"
_SIGNAL = "_jobpulse_horse_signal"
_CAPACITY = "_jobpulse_capacity"
_STATE = "_jobpulse_state"

#: the worker's service.instance.id, given to its work horses (stable across jobs)
_instance: dict[str, Any] = {}
SPAWN_TYPES: tuple[type, ...] = ()


def prepare_execution(original: Callable[..., Any]) -> Callable[..., Any]:
    def prepare(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        execution = original(self, job, *args, **kwargs)
        self.__dict__[_EXEC_ID] = getattr(execution, "id", None)
        return execution

    return prepare


def _execution_id(worker: Any, rest: tuple[Any, ...]) -> str | None:
    if rest and hasattr(rest[0], "id"):  # rq 3: perform_job(job, queue, execution)
        return str(rest[0].id)
    found = worker.__dict__.get(_EXEC_ID)
    return None if found is None else str(found)


def _adopt_instance(rt: _runtime.Runtime) -> None:
    """Horse spans carry the worker's ``service.instance.id``, not one per fork."""
    instance = _instance.get("id")
    if instance is None or _instance.get("pid") == os.getpid() or _instance.get("kept"):
        return  # none known, not a horse, or the fork already kept it (see _fork)
    _instance["pid"] = os.getpid()
    _otel.set_instance_id(rt.providers, instance)


def perform_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def perform(self: Any, job: Any, queue: Any, *rest: Any, **kwargs: Any) -> Any:
        rt = _runtime.get()
        if rt is None:
            return original(self, job, queue, *rest, **kwargs)
        horse = bool(getattr(self, "_is_horse", False))
        handoff = None
        if horse:
            with _guard.never_raise("adapter.rq.horse"):
                _adopt_instance(rt)
                if self.__dict__.get(_REPORT_FD) is not None:
                    handoff = _handoff.start(rt)
        state = _runs.begin(self, job, queue, _execution_id(self, rest), not horse)
        job.__dict__[_STATE] = state
        ok: Any = False
        raised: BaseException | None = None
        quiet = _deps.rq_internal()
        try:
            ok = original(self, job, queue, *rest, **kwargs)
            return ok
        except BaseException as exc:
            raised = exc
            raise
        finally:
            _deps.reset(quiet)
            job.__dict__.pop(_STATE, None)
            result = _runs.end(state, job, ok, raised)
            if horse:
                _finish_horse(self, rt, state, result, handoff)

    return perform


def _finish_horse(worker: Any, rt: _runtime.Runtime, state: Any, result: Any, handoff: Any) -> None:
    """Report to the parent, then export what the parent could not take (bounded)."""
    with _guard.never_raise("adapter.rq.horse"):
        handed = False
        fd = worker.__dict__.pop(_REPORT_FD, None)
        if fd is not None and result is not None and state is not None:
            handed = _horse.send_report(fd, state.job_name, result, state.wait, handoff)
            _horse.close(fd)
        elif handoff is not None:
            handoff.take()
        if not handed:
            _horse.flush(rt, None if result is None else result[3])


def handle_exception(original: Callable[..., Any]) -> Callable[..., Any]:
    def handle(self: Any, job: Any, *exc_info: Any) -> Any:
        state = job.__dict__.get(_STATE) if _runtime.get() is not None else None
        if state is not None and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            state.exc = exc_info[1]
            rq_failed(job, state.run, state.exc)  # guardrails enforce mode: no retry if poison
        return original(self, job, *exc_info)

    return handle


def handle_work_horse_killed(original: Callable[..., Any]) -> Callable[..., Any]:
    def killed(self: Any, job: Any, retpid: Any, ret_val: Any, *rest: Any) -> Any:
        if isinstance(ret_val, int) and os.WIFSIGNALED(ret_val):
            self.__dict__[_SIGNAL] = os.WTERMSIG(ret_val)
        return original(self, job, retpid, ret_val, *rest)

    return killed


def execute_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """The forking worker's parent: one pipe per horse, the count after it."""

    def execute(self: Any, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        rt = _runtime.get()
        if rt is None:
            return original(self, job, queue, *args, **kwargs)
        spawned = isinstance(self, SPAWN_TYPES)
        read = write = None
        state = None
        with _guard.never_raise("adapter.rq.parent"):
            state = _runs.RunState(_runs.attempt_of(job))
            _runs.active[job.id] = state
            if not spawned:
                read, write = _horse.open_pipe()
                self.__dict__[_REPORT_FD] = write
        self.__dict__.pop(_SIGNAL, None)
        started = time.time()
        completed = False
        saved: list[Any] = []
        if read is not None:
            saved = prepare_fork(rt)
        try:
            result = original(self, job, queue, *args, **kwargs)
            completed = True
            return result
        finally:
            end_fork(saved)
            self.__dict__.pop(_REPORT_FD, None)
            _runs.active.pop(job.id, None)
            if not completed:
                # A cold shutdown took the horse down: RQ leaves the job in its started
                # registry and its cleanup reports it as abandoned (lost) later. (A fork
                # that failed was recorded where it failed, in fork_work_horse.)
                _horse.close(read, write)
            elif read is not None:
                _account(self, job, queue, state, started, read, write)
            elif spawned and state is not None:
                _horse.record_spawned(self, job, queue, state, started, self.__dict__.get(_EXEC_ID))

    return execute


def prepare_fork(rt: _runtime.Runtime) -> list[Any]:
    """Before a horse's fork: its counts come back to this worker (no MeterProvider
    in the horse), and it keeps this worker's instance id. Undone by :func:`end_fork`."""
    _runtime.defer_child_metrics = True
    saved: list[Any] = []
    with _guard.never_raise("adapter.rq.parent"):
        saved = _fork.keep_instance(_instance.get("id"), rt.providers.each())
    _instance["kept"] = bool(saved)
    return saved


def end_fork(saved: list[Any]) -> None:
    _runtime.defer_child_metrics = False
    _fork.restore(saved)


def fork_work_horse(original: Callable[..., Any]) -> Callable[..., Any]:
    """The forking worker, right before the fork: start the horse's run here
    (:func:`._runs.begin_before_fork`)."""

    def fork(self: Any, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get(_REPORT_FD) is None:  # not the parent of a jobpulse horse
            return original(self, job, queue, *args, **kwargs)
        run_id = self.__dict__.get(_EXEC_ID)
        _runs.begin_before_fork(self, job, queue, run_id)
        pid = os.getpid()
        try:
            return original(self, job, queue, *args, **kwargs)
        except OSError as exc:  # os.fork() failed: no horse, so nobody else records it
            if os.getpid() == pid:
                _horse.record_fork_failure(self, job, run_id, exc)
            raise

    return fork


def _account(
    worker: Any, job: Any, queue: Any, state: Any, started: float, read: int, write: int | None
) -> None:
    try:
        _horse.close(write)
        with _guard.never_raise("adapter.rq.parent"):
            report = _horse.read_report(read)
            if report is not None and state is not None:
                _horse.count(
                    report["r"], queue.name, job.id, worker.__dict__.get(_EXEC_ID), state.attempt
                )
                rt = _runtime.get()
                if rt is not None:
                    _handoff.receive(rt, report["s"] or [], report["l"] or [], report["m"] or [])
            elif state is not None:
                _horse.record_unreported(
                    worker, job, queue, state, started, worker.__dict__.get(_EXEC_ID),
                    worker.__dict__.pop(_SIGNAL, None),
                )  # fmt: skip
    finally:
        _horse.close(read)


def bootstrap(original: Callable[..., Any]) -> Callable[..., Any]:
    def boot(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        rt = _runtime.get()
        if rt is not None:
            with _guard.never_raise("adapter.rq.capacity"):
                resource = getattr(rt.providers.tracer_provider, "resource", None)
                instance = getattr(resource, "attributes", {}).get("service.instance.id")
                if instance is not None:
                    _instance["id"] = instance
                    _instance["pid"] = os.getpid()
                names = list(dict.fromkeys(self.queue_names()))
                capacity = _runtime.registry().capacity
                for name in names:
                    key = (name, _attrs.SYSTEM)
                    capacity[key] = capacity.get(key, 0) + 1
                self.__dict__[_CAPACITY] = names
        return result

    return boot


def teardown(original: Callable[..., Any]) -> Callable[..., Any]:
    def down(self: Any, *args: Any, **kwargs: Any) -> Any:
        names = self.__dict__.pop(_CAPACITY, None)
        try:
            return original(self, *args, **kwargs)
        finally:
            rt = _runtime.get()
            if names and rt is not None and not getattr(self, "_is_horse", False):
                with _guard.never_raise("adapter.rq.capacity"):
                    capacity = _runtime.registry().capacity
                    for name in names:
                        key = (name, _attrs.SYSTEM)
                        left = capacity.get(key, 0) - 1
                        if left > 0:
                            capacity[key] = left
                        else:
                            capacity.pop(key, None)
                # A pool's workers are multiprocessing children that end with os._exit
                # (no atexit): export what this worker counted before it goes.
                rt.flush()

    return down
