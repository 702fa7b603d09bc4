"""The Celery adapter in one process: eager runs, the producer's headers, install and
uninstall, and the pure helpers (queue wait, ETA, broker address, outcomes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals
from celery.exceptions import (
    Ignore,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from opentelemetry import trace

import jobpulse
from jobpulse import BudgetExceeded, _guard
from jobpulse.adapters.celery import _message, _outcome
from jobpulse.testing import capture

from .conftest import SESSION, span_ids
from .tasks import REDIS_URL, create_app


@pytest.fixture
def app() -> Iterator[Celery]:
    app = create_app(REDIS_URL, f"jp-{SESSION}-inproc-{uuid.uuid4().hex[:6]}")
    yield app
    app.close()


# -- eager runs ----------------------------------------------------------------------
def test_eager_apply_is_a_run_linked_to_the_caller(app: Celery) -> None:
    with capture(raise_internal=True) as cap:
        tracer = cap.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("request") as request:
            result = app.tasks["jp.export"].apply(args=(2,))
        failed = app.tasks["jp.fail"].apply(args=("e",))
        runs = {s.name: s for s in cap.run_spans()}
        assert cap.metric("jobpulse.job.runs", **{"jobpulse.outcome": "success"}) == 1
    assert result.get() == 2
    assert isinstance(failed.result, ValueError)  # Celery's result, as without jobpulse
    run = runs["jp.export"]
    a = dict(run.attributes or {})
    assert a["jobpulse.system"] == "celery"
    assert a["jobpulse.attempt"] == 1
    assert "jobpulse.queue.name" not in a  # not from a queue
    assert "jobpulse.queue.wait" not in a
    assert [link.context for link in run.links] == [request.get_span_context()]
    assert run.context.trace_id != request.get_span_context().trace_id
    assert dict(runs["jp.fail"].attributes or {})["jobpulse.outcome"] == "error"


def test_always_eager_delay_publishes_nothing(app: Celery) -> None:
    app.conf.task_always_eager = True
    with capture(raise_internal=True) as cap:
        assert app.tasks["jp.add"].delay(2, 3).get() == 5
        assert [s.name for s in cap.spans] == ["jp.add"]  # a run, no send span


def test_retry_in_eager_mode(app: Celery) -> None:
    with capture(raise_internal=True) as cap:
        app.tasks["jp.retry_once"].apply(args=("z",))
        actions = sorted(
            (
                dict(s.attributes or {})["jobpulse.attempt"],
                dict(s.attributes or {})["jobpulse.action"],
            )
            for s in cap.run_spans()
        )
    assert actions == [(1, "retry"), (2, "none")]


def test_task_signals_others_rely_on_still_fire(app: Celery) -> None:
    seen: list[str] = []

    def on_failure(sender: Any = None, **_: Any) -> None:
        seen.append(sender.name)

    signals.task_failure.connect(on_failure, weak=False)
    try:
        with capture(raise_internal=True):
            app.tasks["jp.fail"].apply(args=("s",))
    finally:
        signals.task_failure.disconnect(on_failure)
    assert seen == ["jp.fail"]


# -- the producer's headers ------------------------------------------------------------
@pytest.mark.integration
def test_headers_carry_context_and_enqueue_time_as_strings(app: Celery) -> None:
    seen: dict[str, Any] = {}

    def probe(headers: Any = None, properties: Any = None, **_: Any) -> None:
        seen.update(headers)  # connected after jobpulse's receiver
        seen["properties"] = dict(properties or {})

    queue = app.conf.task_default_queue
    try:
        with capture(raise_internal=True) as cap:
            signals.before_task_publish.connect(probe, weak=False)
            before = time.time()
            result = app.tasks["jp.add"].apply_async((1, 2), countdown=30)
            (send,) = cap.spans
    finally:
        signals.before_task_publish.disconnect(probe)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
    assert isinstance(seen["traceparent"], str)
    trace_id, span_id = span_ids(send)
    assert seen["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert isinstance(seen["jobpulse_enqueued_at"], str)
    assert before <= float(seen["jobpulse_enqueued_at"]) <= time.time()
    # The AMQP timestamp property, whole seconds (the probe reads it on RabbitMQ).
    assert int(before) <= seen["properties"]["timestamp"] <= time.time()
    assert send.name == "send jp.add"
    assert send.kind is trace.SpanKind.PRODUCER
    a = dict(send.attributes or {})
    assert a["messaging.operation.type"] == "send"
    assert a["messaging.destination.name"] == queue
    assert a["messaging.message.id"] == result.id
    assert a["jobpulse.job.name"] == "jp.add"


class _BrokenPropagator:
    fields = frozenset({"traceparent"})

    def inject(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken propagator")

    def extract(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken propagator")


@pytest.mark.integration
@pytest.mark.allow_internal_errors
def test_a_jobpulse_failure_never_stops_the_publish(app: Celery) -> None:
    from opentelemetry import propagate

    queue = app.conf.task_default_queue
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(_BrokenPropagator())  # type: ignore[arg-type]
    try:
        with capture() as cap:
            app.tasks["jp.add"].apply_async((1, 2))
            assert cap.metric(
                "jobpulse.telemetry.errors", **{"jobpulse.component": "adapter.celery.publish"}
            )
        with app.connection_for_write() as conn:
            assert conn.default_channel.queue_purge(queue) == 1  # the message went out
    finally:
        propagate.set_global_textmap(previous)


# -- install / uninstall -----------------------------------------------------------------
def _ours(signal: Any) -> list[Any]:
    return [key for key, _ in signal.receivers if str(key[0]).startswith("jobpulse.celery.")]


def test_uninstrument_removes_every_hook(app: Celery) -> None:
    from celery.worker import strategy

    hooked = (
        signals.before_task_publish, signals.after_task_publish, signals.task_prerun,
        signals.task_postrun, signals.task_revoked, signals.worker_init, signals.worker_ready,
        signals.worker_shutdown, signals.worker_process_init, signals.worker_process_shutdown,
    )  # fmt: skip
    original = strategy.create_request_cls
    jobpulse.instrument(configure_otel=False)
    assert all(_ours(s) for s in hooked)
    assert strategy.create_request_cls is not original
    assert strategy.create_request_cls.__wrapped__ is original  # type: ignore[attr-defined]
    jobpulse.uninstrument()
    assert not [s for s in hooked if _ours(s)]
    assert strategy.create_request_cls is original
    with capture(raise_internal=True) as cap:
        jobpulse.uninstrument()
        app.tasks["jp.add"].apply(args=(1, 1))
        assert cap.spans == []


def test_request_classes_built_while_instrumented_go_inert(app: Celery) -> None:
    from jobpulse.adapters.celery import _requests

    class Base:
        calls: list[str] = []

        def on_success(self, result: Any, **kwargs: Any) -> None:
            self.calls.append("success")

    with capture(raise_internal=True):
        cls = _requests.request_class(Base)
    assert cls.__name__ == "Base"
    cls().on_success((0, None, 0.1))  # uninstrumented: Celery's method only
    assert Base.calls == ["success"]


def test_soft_time_limit_passes_through_jobpulse(app: Celery) -> None:
    with capture(raise_internal=True):
        assert SoftTimeLimitExceeded in _guard.PASSTHROUGH
        with pytest.raises(SoftTimeLimitExceeded), _guard.never_raise("test"):
            raise SoftTimeLimitExceeded()


# -- pure helpers ------------------------------------------------------------------------
def test_queue_wait_from_enqueue_or_eta_clamped_at_zero() -> None:
    now = 1_800_000_000.0
    assert _message.queue_wait({"jobpulse_enqueued_at": str(now - 2)}, now) == pytest.approx(2)
    assert _message.queue_wait({"jobpulse_enqueued_at": str(now + 60)}, now) == 0.0
    eta = "2027-01-15T08:00:00+00:00"
    due = _message.eta_seconds(eta)
    assert due is not None
    headers = {"jobpulse_enqueued_at": str(due - 30), "eta": eta}
    assert _message.queue_wait(headers, due + 0.5) == pytest.approx(0.5)
    assert _message.eta_seconds("2027-01-15T08:00:00") == due  # naive: UTC, as Celery sends
    assert _message.queue_wait({}, now) is None
    assert _message.queue_wait({"jobpulse_enqueued_at": "nonsense"}, now) is None


def test_getter_coerces_non_strings() -> None:
    class Request:
        traceparent = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"
        retries = 3

    assert _message.GETTER.get(Request(), "traceparent") == [
        "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    ]
    assert _message.GETTER.get(Request(), "retries") == ["3"]
    assert _message.GETTER.get({"a": ("x", 1)}, "a") == ["x", "1"]
    assert _message.GETTER.get({}, "missing") is None
    ctx = _message.producer_context(Request())
    assert ctx is not None
    assert ctx.trace_id == int("1" * 32, 16)


def test_broker_address_without_credentials() -> None:
    attrs = _message.broker_attributes("amqp://guest:s3cret@rabbit.internal:5672/vhost")
    assert attrs == {"server.address": "rabbit.internal", "server.port": 5672}
    attrs = _message.broker_attributes("redis://:pw@10.0.0.5:6380/1;redis://other:6379/1")
    assert attrs == {"server.address": "10.0.0.5", "server.port": 6380}
    assert _message.broker_attributes(None) == {}


def test_budget_from_task_limits_and_retries() -> None:
    class Task:
        time_limit = 60
        soft_time_limit = 50
        max_retries = 3

    budget = _message.framework_budget(Task(), None, (None, None))
    assert budget is not None
    assert (budget.max_runtime, budget.max_attempts) == (50, 4)
    budget = _message.framework_budget(Task(), (20, None), (None, None))  # message options win
    assert budget is not None
    assert budget.max_runtime == 20

    class Unlimited:
        time_limit = soft_time_limit = max_retries = None

    assert _message.framework_budget(Unlimited(), None, (None, None)) is None
    worker_default = _message.framework_budget(Unlimited(), None, (300, None))
    assert worker_default is not None
    assert worker_default.max_runtime == 300


@pytest.mark.parametrize(
    ("exc", "state", "expected"),
    [
        (None, "SUCCESS", ("success", "none", None)),
        (ValueError("x"), "FAILURE", ("error", "stop", "ValueError")),
        (Retry(exc=KeyError("k")), "RETRY", ("error", "retry", "KeyError")),
        (Retry(), "RETRY", ("error", "retry", "celery.exceptions.Retry")),
        (Retry(exc=SoftTimeLimitExceeded()), "RETRY",
         ("timeout", "retry", "celery.exceptions.SoftTimeLimitExceeded")),
        (Ignore(), "IGNORED", ("cancelled", "none", None)),
        (Reject(requeue=True), "REJECTED", ("cancelled", "retry", None)),
        (Reject(requeue=False), "REJECTED", ("cancelled", "stop", None)),
        (SoftTimeLimitExceeded(), "FAILURE",
         ("timeout", "stop", "celery.exceptions.SoftTimeLimitExceeded")),
        (TimeLimitExceeded(3), None, ("timeout", "stop", "celery.exceptions.TimeLimitExceeded")),
        (BudgetExceeded("j", "max_runtime", 1, 2), "FAILURE",
         ("timeout", "stop", "jobpulse.BudgetExceeded")),
        (WorkerLostError("x"), None, ("error", "stop", "celery.exceptions.WorkerLostError")),
    ],
)  # fmt: skip
def test_outcomes(exc: Any, state: Any, expected: tuple[str, str, Any]) -> None:
    outcome, action, _exc, error_type = _outcome.classify(exc, state=state)
    assert (outcome.value, action.value, error_type) == expected


def test_an_error_raised_while_handling_the_soft_limit_is_a_timeout() -> None:
    try:
        try:
            raise SoftTimeLimitExceeded()
        except SoftTimeLimitExceeded:
            raise OSError("cleanup failed") from None
    except OSError as exc:
        caught = exc
    outcome, _, _, error_type = _outcome.classify(caught, state="FAILURE")
    assert (outcome.value, error_type) == ("timeout", "OSError")
    # the main process sees only the final exception, and that the soft limit fired
    outcome, *_ = _outcome.classify(OSError("cleanup failed"), soft_fired=True)
    assert outcome.value == "timeout"
