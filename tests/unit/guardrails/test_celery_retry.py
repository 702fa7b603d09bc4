"""The real ``Task.retry`` wrapper and the end-of-run quarantine, without a worker: a
Celery app on the ``memory://`` broker, a request pushed as the worker would
(``push_request``), the run begun by jobpulse's own ``task_prerun`` receiver.

Observe mode must call Celery's ``Task.retry`` with exactly the caller's arguments;
enforce mode caps the attempts (Celery raising before it sends anything) and turns
an immediate retry into a backoff."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery import Celery  # noqa: E402
from celery._state import pop_current_task, push_current_task  # noqa: E402
from celery.app.task import Task  # noqa: E402
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded  # noqa: E402

from jobpulse import Budget, _lifecycle  # noqa: E402
from jobpulse._run import JobRun, Outcome  # noqa: E402
from jobpulse.adapters.celery import _consumer, _retry  # noqa: E402
from jobpulse.adapters.celery._outcome import Quarantined  # noqa: E402
from jobpulse.guardrails import Guardrails, MemoryStore, Rules  # noqa: E402
from jobpulse.guardrails._quarantine import _mark_handled  # noqa: E402
from jobpulse.testing import Captured, capture  # noqa: E402

MISSING = "<missing>"


class Calls:
    """What Celery's own ``Task.retry`` and ``apply_async`` were called with."""

    def __init__(self) -> None:
        self.retry: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Spies under jobpulse's wrapper (set before ``capture()`` wraps ``Task.retry``) that
    call through to Celery's; nothing is published (``apply_async`` only records)."""
    seen = Calls()
    real_retry = Task.retry
    assert not hasattr(real_retry, "__wrapped__"), "Task.retry is still wrapped"

    def retry(self: Any, args: Any = None, kwargs: Any = None, exc: Any = None,
              *rest: Any, **options: Any) -> Any:  # fmt: skip
        seen.retry.append({"args": args, "kwargs": kwargs, "exc": exc, "rest": rest,
                           "options": options})  # fmt: skip
        return real_retry(self, args, kwargs, exc, *rest, **options)

    def apply_async(self: Any, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        seen.sent.append({"args": args, "kwargs": kwargs, **options})

    monkeypatch.setattr(Task, "retry", retry)
    monkeypatch.setattr(Task, "apply_async", apply_async)
    return seen


@pytest.fixture
def app() -> Celery:
    app = Celery("jpunit", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = "unit"

    @app.task(name="jpunit.fetch", bind=True, shared=False, max_retries=None,
              default_retry_delay=0)  # fmt: skip
    def fetch(self: Any, vendor: str) -> None:
        raise ConnectionError(f"{vendor} reset the connection")

    @app.task(name="jpunit.backoff", bind=True, shared=False, max_retries=None,
              default_retry_delay=0, retry_backoff=True, retry_backoff_max=2)  # fmt: skip
    def backoff(self: Any) -> None:
        raise ConnectionError("reset")

    @app.task(name="jpunit.validate", bind=True, shared=False)
    def validate(self: Any, record: int) -> None:
        raise PermissionError(f"record {record}")

    app.finalize()
    return app


@contextmanager
def running(
    task: Any, task_id: str = "t-1", *, retries: int = 0, eager: bool = False,
    args: tuple[Any, ...] = ("acme",), current: Any = None,
) -> Iterator[JobRun | None]:  # fmt: skip
    """``task`` running from a message (or eagerly), as a worker has it at that point:
    its request pushed, it is ``current_task``, jobpulse's ``task_prerun`` has run."""
    task.push_request(
        id=task_id, retries=retries, is_eager=eager, called_directly=False, args=list(args),
        kwargs={}, delivery_info={"routing_key": "unit", "exchange": ""},
        hostname="unit@host",
    )  # fmt: skip
    push_current_task(current if current is not None else task)
    try:
        _consumer.on_prerun(task_id=task_id, task=task, args=args, kwargs={})
        run = _consumer.run_of(task.request)
        yield run
    finally:
        pop_current_task()
        key = (task_id, id(task.request))
        task.pop_request()
        _lifecycle.end_run(_consumer._runs.pop(key, None), Outcome.ERROR, "retry")


def test_the_wrapper_is_installed_over_celerys_retry(calls: Calls) -> None:
    with capture():
        assert Task.retry.__wrapped__ is not None  # type: ignore[attr-defined]
    assert not hasattr(Task.retry, "__wrapped__")  # uninstrument() put Celery's back


@pytest.mark.parametrize(
    ("rest", "options"),
    [
        ((), {}),
        ((), {"countdown": 0}),
        ((True, None, 0, None), {}),  # throw, eta, countdown, max_retries positionally
        ((), {"max_retries": 2, "countdown": 0, "queue": "other"}),
        ((True,), {"max_retries": None, "priority": 3}),
    ],
)
@pytest.mark.parametrize("prior", [MISSING, 7])
def test_observe_mode_passes_the_callers_arguments_through(
    app: Celery, calls: Calls, rest: tuple[Any, ...], options: dict[str, Any], prior: Any
) -> None:
    task = app.tasks["jpunit.fetch"]
    if prior is not MISSING:
        task.override_max_retries = prior
    exc = ConnectionError("reset")
    try:
        with capture(), running(task, retries=1) as run:
            assert run is not None
            with pytest.raises(Retry):
                task.retry(("acme",), None, exc, *rest, **options)
        assert calls.retry == [
            {"args": ("acme",), "kwargs": None, "exc": exc, "rest": rest, "options": options}
        ]
        # what Celery itself leaves: the caller's max_retries, else what was there
        positional = dict(zip(("throw", "eta", "countdown", "max_retries"), rest, strict=False))
        caller_max = positional.get("max_retries", options.get("max_retries"))
        expected = caller_max if caller_max is not None else prior
        assert task.__dict__.get("override_max_retries", MISSING) == expected
        [sent] = calls.sent
        assert sent.get("countdown") == 0  # an immediate retry stays immediate
    finally:
        task.__dict__.pop("override_max_retries", None)


def test_the_wrapper_without_jobpulse_running_is_celerys(app: Celery, calls: Calls) -> None:
    task = app.tasks["jpunit.fetch"]
    with capture():
        pass
    with running(task) as run:
        assert run is None
        with pytest.raises(Retry):
            task.retry(exc=ConnectionError("reset"))
    assert calls.retry[0]["options"] == {}


def test_enforce_mode_backs_off_an_immediate_retry(app: Celery, calls: Calls) -> None:
    task = app.tasks["jpunit.fetch"]
    with capture(guardrails=Guardrails(enforce=True, max_attempts=5)):
        with running(task, retries=2), pytest.raises(Retry):
            task.retry(exc=ConnectionError("reset"), countdown=0)
        [call] = calls.retry
        assert set(call["options"]) == {"countdown"}
        assert 2.0 <= call["options"]["countdown"] <= 4.0  # after 2 retries: 2-4 s
        assert calls.sent[0]["countdown"] == call["options"]["countdown"]
        assert "override_max_retries" not in task.__dict__  # no max_retries passed

        backoff = app.tasks["jpunit.backoff"]  # retry_backoff_max=2: its cap, not 600
        with running(backoff, "t-2", retries=3), pytest.raises(Retry):
            backoff.retry(exc=ConnectionError("reset"), countdown=0)
        assert 1.0 <= calls.retry[-1]["options"]["countdown"] <= 2.0


@pytest.mark.parametrize(("caller_max", "left"), [(None, MISSING), (10, 10)])
def test_enforce_mode_caps_unbounded_retries(
    app: Celery, calls: Calls, caller_max: Any, left: Any
) -> None:
    """The last attempt the budget allows gets ``max_retries``: Celery raises the task's
    exception before sending anything, and keeps only what the caller's call would."""
    task = app.tasks["jpunit.fetch"]
    exc = ConnectionError("reset")
    options = {} if caller_max is None else {"max_retries": caller_max}
    budgets = {"jpunit.fetch": Budget(max_attempts=3)}  # beats Celery's bound, if any
    try:
        with capture(guardrails=Guardrails(enforce=True), budgets=budgets):
            with running(task, retries=1), pytest.raises(Retry):
                task.retry(exc=exc, **options)  # attempt 2 of 3: retried
            assert calls.retry[-1]["options"].get("max_retries") == caller_max  # the caller's
            assert len(calls.sent) == 1
            with running(task, retries=2), pytest.raises(ConnectionError) as raised:
                task.retry(exc=exc, **options)  # attempt 3 of 3: no retry
            assert raised.value is exc
            assert calls.retry[-1]["options"] == {"max_retries": 2}
            assert len(calls.sent) == 1  # nothing sent
            assert task.__dict__.get("override_max_retries", MISSING) == left
    finally:
        task.__dict__.pop("override_max_retries", None)


def test_poison_retry_is_rejected_with_celerys_error_type(app: Celery, calls: Calls) -> None:
    """The retry path classifies with the error type and outcome the run's span gets
    (Celery's name for billiard's exceptions), so payload and span agree."""
    store = MemoryStore()
    rules = Rules(non_retryable=(SoftTimeLimitExceeded,))
    task = app.tasks["jpunit.fetch"]
    with capture(guardrails=Guardrails(enforce=True, store=store, rules=rules)) as cap:
        with running(task, "t-soft") as run:
            with pytest.raises(Quarantined) as rejected:
                task.retry(exc=SoftTimeLimitExceeded())
            fail_at_postrun(task, run, rejected.value, "REJECTED")
        assert calls.retry == []  # not retried at all
        payload = store.get("t-soft")
        assert payload is not None
        [span] = cap.run_spans()
        assert span.attributes["jobpulse.action"] == "quarantine"
        assert payload.error_type == span.attributes["error.type"]
        assert payload.error_type == "celery.exceptions.SoftTimeLimitExceeded"
        assert payload.error_fingerprint == span.attributes["jobpulse.error.fingerprint"]


# -- the end of a run Celery does not retry ---------------------------------------
def fail_at_postrun(task: Any, run: JobRun | None, exc: BaseException, state: str) -> None:
    """What Celery's ``task_postrun`` does for a failed task (its receiver, for real)."""
    assert run is not None
    _consumer.on_postrun(task_id=run.job_id, task=task, retval=exc, state=state)


@pytest.fixture
def enforcing() -> Iterator[tuple[MemoryStore, Captured]]:
    store = MemoryStore()
    with capture(guardrails=Guardrails(enforce=True, store=store)) as cap:
        yield store, cap


def test_unretried_poison_run_is_stored_with_the_spans_error_type(
    app: Celery, enforcing: tuple[MemoryStore, Captured]
) -> None:
    store, cap = enforcing
    task = app.tasks["jpunit.validate"]
    with running(task, "t-1", args=(3,)) as run:
        fail_at_postrun(task, run, PermissionError("record 3"), "FAILURE")
    payload = store.get("t-1")
    assert payload is not None
    [span] = cap.run_spans()
    assert span.attributes["jobpulse.action"] == "quarantine"
    assert payload.error_type == span.attributes["error.type"] == "PermissionError"
    assert payload.error_fingerprint == span.attributes["jobpulse.error.fingerprint"]
    assert payload.release is not None
    assert payload.release["args"] == [3]


def test_unretried_time_limit_payload_uses_celerys_name(app: Celery) -> None:
    store = MemoryStore()
    rules = Rules(non_retryable=(TimeLimitExceeded,))
    task = app.tasks["jpunit.validate"]
    with capture(guardrails=Guardrails(enforce=True, store=store, rules=rules)) as cap:
        with running(task, "t-hard", args=(3,)) as run:
            fail_at_postrun(task, run, TimeLimitExceeded(5), "FAILURE")
        payload = store.get("t-hard")
        assert payload is not None
        [span] = cap.run_spans()
        assert payload.error_type == span.attributes["error.type"]
        assert payload.error_type == "celery.exceptions.TimeLimitExceeded"
        assert payload.error_fingerprint == span.attributes["jobpulse.error.fingerprint"]


def test_unretried_skips_eager_calls(app: Celery, enforcing: tuple[MemoryStore, Captured]) -> None:
    store, cap = enforcing
    task = app.tasks["jpunit.validate"]
    with running(task, "t-eager", eager=True, args=(3,)) as run:
        fail_at_postrun(task, run, PermissionError("record 3"), "FAILURE")
    assert store.entries() == []  # no message to release
    assert cap.run_spans()[0].attributes["jobpulse.action"] == "quarantine"


def test_unretried_skips_another_tasks_postrun(
    app: Celery, enforcing: tuple[MemoryStore, Captured]
) -> None:
    """``current_task`` is another task (a task called from a task): its request is not
    this run's, so nothing is stored from it."""
    store, _cap = enforcing
    task, other = app.tasks["jpunit.validate"], app.tasks["jpunit.fetch"]
    other.push_request(id="t-other", called_directly=False, is_eager=False, args=["x"])
    try:
        with running(task, "t-1", args=(3,), current=other) as run:
            fail_at_postrun(task, run, PermissionError("record 3"), "FAILURE")
    finally:
        other.pop_request()
    assert store.entries() == []


def test_unretried_skips_runs_already_handled(
    app: Celery, enforcing: tuple[MemoryStore, Captured]
) -> None:
    store, _cap = enforcing
    task = app.tasks["jpunit.validate"]
    with running(task, "t-1", args=(3,)) as run:
        assert run is not None
        _mark_handled(run.run_id)  # Task.retry already set it aside
        fail_at_postrun(task, run, PermissionError("record 3"), "FAILURE")
    assert store.entries() == []


def test_unretried_in_observe_mode_stores_nothing(app: Celery) -> None:
    store = MemoryStore()
    task = app.tasks["jpunit.validate"]
    with capture(guardrails=Guardrails(store=store)) as cap:
        with running(task, "t-1", args=(3,)) as run:
            fail_at_postrun(task, run, PermissionError("record 3"), "FAILURE")
        assert store.entries() == []
        assert cap.run_spans()[0].attributes["jobpulse.action"] == "quarantine"


def test_unretried_is_not_called_for_a_retry(
    app: Celery, enforcing: tuple[MemoryStore, Captured], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(_retry, "quarantine_unretried", lambda *a: seen.append(a))
    task = app.tasks["jpunit.validate"]
    with running(task, "t-1", args=(3,)) as run:
        retry = Retry(exc=PermissionError("record 3"), when=1)
        fail_at_postrun(task, run, retry, "RETRY")
    assert seen == []
