"""Enforce mode with a real Celery worker (prefork, 2 children): a poison task is not
retried but rejected without requeue, or (no retry path) set aside as Celery fails it,
its payload stored in Redis and the run recorded as ``error``/``quarantine`` by the
child (span) and by the main process (counter); ``jobpulse quarantine release`` sends
it again with its id; other retries stay bounded. Observe mode changes nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from jobpulse.guardrails import RedisStore
from tests.support.otlp import Receiver, Span

from .celery_app import BUDGETED_ATTEMPTS, MAX_ATTEMPTS, runs_key
from .celery_worker import celery_worker, run, state
from .conftest import REDIS_URL, wait_until

celery = pytest.importorskip("celery")
pytestmark = pytest.mark.integration
TASK = "jpguard.parse"
UNRETRIED = "jpguard.validate"
RUNS = "jobpulse.job.runs"


@pytest.fixture
def worker(redis_db: Any, otlp: Receiver, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A prefork worker (2 children), enforce mode, on a queue of its own."""
    with celery_worker(otlp, tmp_path / "worker.log") as (app, env, _queue):
        yield app, env


def spans_of(otlp: Receiver, task_id: str, count: int) -> list[Span]:
    """The run spans of one task id, by attempt, once ``count`` of them arrived."""
    otlp.wait_for(
        lambda r: (
            len([s for s in r.run_spans() if s.attributes["jobpulse.job.id"] == task_id]) >= count
        ),
        what=f"{count} run span(s) of {task_id}",
    )
    found = [s for s in otlp.run_spans() if s.attributes["jobpulse.job.id"] == task_id]
    assert len(found) == count
    return sorted(found, key=lambda s: s.attributes["jobpulse.attempt"])


def test_poison_celery_task_is_rejected_not_retried(
    redis_db: Any, otlp: Receiver, worker: tuple[Any, dict[str, str]]
) -> None:
    app, env = worker
    result = app.send_task(TASK, (7,))
    task_id = result.id

    wait_until(lambda: result.state not in ("PENDING", "STARTED"), timeout=30, what="a result")
    assert result.state in ("FAILURE", "REJECTED"), result.state  # not RETRY

    store = RedisStore(redis_db)
    stored = wait_until(lambda: store.get(task_id), what="the quarantine payload")
    assert stored.job == TASK
    assert stored.system == "celery"
    assert stored.attempts == 1  # not the 6 autoretry_for would have made
    assert stored.reason == "non_retryable"
    assert stored.error_type.endswith("BadInput")
    assert stored.input_fingerprint is not None
    assert stored.release is not None
    assert stored.release["task"] == TASK
    assert stored.release["args"] == [7]

    otlp.wait_for(
        lambda r: r.total(RUNS, **{"jobpulse.action": "quarantine"}) >= 1,
        what="the main process's counter",
    )
    assert otlp.total(RUNS, **{"jobpulse.action": "retry"}) == 0
    assert otlp.total(RUNS, **{"jobpulse.outcome": "error"}) == 1
    [span] = spans_of(otlp, task_id, 1)
    assert span.attributes["jobpulse.outcome"] == "error"
    assert span.attributes["jobpulse.action"] == "quarantine"
    assert stored.trace_id == span.trace_id

    listing = run(
        [sys.executable, "-m", "jobpulse", "quarantine", "--redis", REDIS_URL, "list"], env
    )
    assert task_id in listing
    assert "BadInput" in listing


def test_poison_task_without_a_retry_path_is_set_aside(
    redis_db: Any, otlp: Receiver, worker: tuple[Any, dict[str, str]]
) -> None:
    """No autoretry_for, no self.retry(): Celery fails the task as always (FAILURE), and
    enforce mode stores the payload; the run is classified once, not twice."""
    app, _env = worker
    task_id = app.send_task(UNRETRIED, (5,)).id

    wait_until(lambda: state(app, task_id) == "FAILURE", timeout=30, what="FAILURE")
    stored = wait_until(lambda: RedisStore(redis_db).get(task_id), what="the payload")
    assert stored.job == UNRETRIED
    assert stored.system == "celery"
    assert stored.attempts == 1
    assert stored.reason == "non_retryable"
    assert stored.error_type.endswith("BadInput")
    assert stored.input_fingerprint is not None
    assert stored.release is not None
    assert stored.release["task"] == UNRETRIED
    assert stored.release["args"] == [5]
    assert stored.release["kwargs"] == {}

    [span] = spans_of(otlp, task_id, 1)
    assert span.attributes["jobpulse.action"] == "quarantine"
    assert stored.trace_id == span.trace_id
    assert stored.run_id == span.attributes["jobpulse.run.id"]
    otlp.wait_for(
        lambda r: r.total(RUNS, **{"jobpulse.action": "quarantine"}) == 1,
        what="the main process's counter",
    )
    # child (should_quarantine, then end_run) and main process (count_run) classified
    # the same run: one attempt in the job id's memory, one log record
    memory = json.loads(redis_db.get(f"jobpulse:attempts:{task_id}"))
    assert memory["count"] == 1
    assert memory["attempt"] == 1
    assert [h["action"] for h in RedisStore(redis_db).history()] == ["quarantine"]
    assert int(redis_db.get(runs_key(task_id))) == 1


def test_release_runs_the_task_again_with_its_id(
    redis_db: Any, otlp: Receiver, worker: tuple[Any, dict[str, str]]
) -> None:
    """``jobpulse quarantine release ID``: the worker runs the same task id again."""
    app, env = worker
    task_id = app.send_task(UNRETRIED, (11,)).id
    store = RedisStore(redis_db)
    wait_until(lambda: store.get(task_id), what="the quarantine payload")
    otlp.wait_for(
        lambda r: r.total(RUNS, **{"jobpulse.action": "quarantine"}) == 1,
        what="the main process's count of the poison run",
    )
    assert state(app, task_id) == "FAILURE"

    redis_db.set("fixed:11", "1")  # the operator fixed the input
    cli = [sys.executable, "-m", "jobpulse", "quarantine", "--redis", REDIS_URL]
    out = run([*cli, "release", task_id, "--broker", REDIS_URL], env)
    assert f"re-sent Celery task {UNRETRIED} with id {task_id}" in out

    wait_until(lambda: state(app, task_id) == "SUCCESS", timeout=30, what="the released run")
    assert app.AsyncResult(task_id).get(timeout=5) == "valid"
    assert int(redis_db.get(runs_key(task_id))) == 2
    payload = store.get(task_id)
    assert payload is not None
    assert payload.status == "released"
    assert [h["action"] for h in store.history()] == ["release", "quarantine"]
    assert redis_db.get(f"jobpulse:attempts:{task_id}") is None  # a fresh start

    first, second = sorted(
        spans_of(otlp, task_id, 2), key=lambda s: s.start_ns
    )  # both attempt 1: released, not retried
    assert first.attributes["jobpulse.action"] == "quarantine"
    assert second.attributes["jobpulse.outcome"] == "success"
    assert second.attributes["jobpulse.attempt"] == 1
    assert "no quarantined jobs" in run([*cli, "list"], env)


def test_unbounded_retries_stop_at_the_attempt_budget(
    redis_db: Any, otlp: Receiver, worker: tuple[Any, dict[str, str]]
) -> None:
    """``max_retries=None`` and a transient failure: Guardrails.max_attempts (3 here) or
    the jobpulse budget (2) ends it, each retry after a backoff, not at once."""
    app, _env = worker
    unbounded = app.send_task("jpguard.fetch", ("acme",)).id
    budgeted = app.send_task("jpguard.fetch_budgeted", ("acme",)).id

    for task_id in (unbounded, budgeted):
        wait_until(lambda t=task_id: state(app, t) == "FAILURE", timeout=60, what="FAILURE")
    assert int(redis_db.get(runs_key(unbounded))) == MAX_ATTEMPTS
    assert int(redis_db.get(runs_key(budgeted))) == BUDGETED_ATTEMPTS

    spans = spans_of(otlp, unbounded, MAX_ATTEMPTS)
    assert [s.attributes["jobpulse.action"] for s in spans] == ["retry", "retry", "stop"]
    assert {s.attributes["jobpulse.failure.class"] for s in spans} == {"transient"}
    for before, after in pairwise(spans):
        # default_retry_delay=0 would retry at once; the backoff after attempt n waits at
        # least half of 2**(n-1) s: 0.5 s, then 1 s. It starts at retry(), inside the
        # earlier attempt, so start to start is at least that (no slack needed)
        least = 2.0 ** (before.attributes["jobpulse.attempt"] - 1) / 2
        wait = (after.start_ns - before.start_ns) / 1e9
        assert wait >= least, (wait, least)
    spans = spans_of(otlp, budgeted, BUDGETED_ATTEMPTS)
    assert [s.attributes["jobpulse.action"] for s in spans] == ["retry", "stop"]
    assert RedisStore(redis_db).entries() == []  # transient: nothing quarantined


def test_observe_mode_changes_nothing(redis_db: Any, otlp: Receiver, tmp_path: Path) -> None:
    """The poison run says quarantine; Celery still retries it as it decides (5 retries)."""
    with celery_worker(otlp, tmp_path / "worker.log", enforce=False) as (app, _env, _queue):
        task_id = app.send_task(TASK, (3,)).id
        wait_until(lambda: state(app, task_id) == "FAILURE", timeout=60, what="FAILURE")
        spans = spans_of(otlp, task_id, 6)
        assert [s.attributes["jobpulse.action"] for s in spans] == ["quarantine"] * 6
        assert [s.attributes["jobpulse.attempt"] for s in spans] == [1, 2, 3, 4, 5, 6]
        otlp.wait_for(
            lambda r: r.total(RUNS, **{"jobpulse.action": "quarantine"}) == 6,
            what="the main process's counter",
        )
        assert RedisStore(redis_db).entries() == []
