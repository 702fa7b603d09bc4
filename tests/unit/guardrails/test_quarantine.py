"""Enforce mode sets poison runs aside with an operator payload; observe mode stores nothing."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import jobpulse
from jobpulse import _lifecycle
from jobpulse.guardrails import Guardrails, MemoryStore, Payload, quarantine, should_quarantine
from jobpulse.guardrails._quarantine import input_fingerprint, memory_store
from jobpulse.testing import capture


class BadInput(Exception):
    pass


def test_in_process_poison_run_is_set_aside_and_raises_to_the_caller() -> None:
    """Enforce: the caller gets the original error, the run says quarantine, the store
    holds a payload with the step, trace id and an input hash but not the arguments."""
    with capture(
        guardrails=Guardrails(
            enforce=True, rules=jobpulse.guardrails.Rules(non_retryable=(BadInput,))
        )
    ) as cap:

        @jobpulse.job("imports.customer")
        def import_customer(customer_id: int, email: str) -> None:
            with jobpulse.step("Validate"):
                raise BadInput(f"customer {customer_id}: email {email!r} is not valid")

        with pytest.raises(BadInput):
            import_customer(42, email="bob@example")
        span = cap.run_spans()[0]
        assert span.attributes["jobpulse.action"] == "quarantine"
        [payload] = memory_store().entries()
        assert payload.job == "imports.customer"
        assert payload.system == "function"
        assert payload.job_id == span.attributes["jobpulse.job.id"] == payload.id
        assert payload.run_id == span.attributes["jobpulse.run.id"]
        assert payload.attempts == 1
        assert payload.error_type == f"{__name__}.BadInput"
        assert "is not valid" in payload.error_message
        assert payload.step == "Validate"
        assert payload.trace_id == format(span.context.trace_id, "032x")
        assert payload.reason == "non_retryable"
        assert "release" in payload.suggested_action
        assert payload.input_fingerprint is not None
        assert payload.args is None
        assert "bob@example" not in payload.to_json().replace(payload.error_message, "")
        assert payload.first_seen <= payload.last_seen
        lines = [r for r in cap.logs if r.getMessage().startswith("job quarantined")]
        assert getattr(lines[0], "jobpulse.action") == "quarantine"


def test_same_input_same_input_fingerprint() -> None:
    with capture(guardrails={"enforce": True}):

        @jobpulse.job("J")
        def j(x: int, *, y: str = "") -> None:
            raise PermissionError("no")

        for _ in range(2):
            with pytest.raises(PermissionError):
                j(1, y="a")
        with pytest.raises(PermissionError):
            j(2, y="a")
        prints = [p.input_fingerprint for p in memory_store().entries()]
        assert len(prints) == 3
        assert len(set(prints)) == 2


def test_allowed_arguments_are_kept() -> None:
    """Arguments appear in the payload only when record_args allows them by name."""
    with capture(guardrails={"enforce": True}, record_args={"J": ["customer_id"]}):

        @jobpulse.job("J")
        def j(customer_id: int, secret: str) -> None:
            raise PermissionError("no")

        with pytest.raises(PermissionError):
            j(customer_id=7, secret="hunter2")
        [payload] = memory_store().entries()
        assert payload.args == {"customer_id": 7}


def test_observe_mode_stores_nothing() -> None:
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> None:
            raise PermissionError("no")

        with pytest.raises(PermissionError):
            j()
        assert cap.run_spans()[0].attributes["jobpulse.action"] == "quarantine"
        assert memory_store().entries() == []


def test_enforce_per_job() -> None:
    """Guardrails(enforce=None) follows the run's own enforcement."""
    with capture():

        @jobpulse.job("J", enforce=True)
        def j() -> None:
            raise PermissionError("no")

        with pytest.raises(PermissionError):
            j()
        assert len(memory_store().entries()) == 1


def test_adapter_functions() -> None:
    """What the Celery and RQ adapters call: should_quarantine, then quarantine."""
    store = MemoryStore()
    with capture(guardrails=Guardrails(enforce=True, store=store)) as cap:
        run = _lifecycle.begin_run(
            "tasks.resize", system="celery", job_id="t-1", attempt=1, queue="images"
        )
        assert should_quarantine(run, ConnectionError("reset")) is None  # transient
        _lifecycle.end_run(run, "error", "retry", ConnectionError("reset"))

        run = _lifecycle.begin_run(
            "tasks.resize", system="celery", job_id="t-1", attempt=2, queue="images"
        )
        exc = ValueError("image 123 is corrupt")
        payload = should_quarantine(
            run,
            exc,
            args=("s3://bucket/x.png",),
            kwargs={"size": 3},
            release={"task": "tasks.resize", "queue": "images", "args": ["s3://bucket/x.png"]},
        )
        assert payload is None  # unknown: first ValueError
        _lifecycle.end_run(run, "error", "retry", exc)

        run = _lifecycle.begin_run(
            "tasks.resize", system="celery", job_id="t-1", attempt=3, queue="images"
        )
        exc = ValueError("image 124 is corrupt")
        payload = should_quarantine(
            run,
            exc,
            args=("s3://bucket/x.png",),
            kwargs={"size": 3},
            release={"task": "tasks.resize", "queue": "images", "args": ["s3://bucket/x.png"]},
        )
        assert isinstance(payload, Payload)
        assert payload.attempts == 3
        assert payload.reason == "repeated"
        assert payload.queue == "images"
        stored = quarantine(payload)
        _lifecycle.end_run(run, "error", "quarantine", exc)
        assert store.get("t-1") == stored
        assert len(store.entries()) == 1  # the end-of-run hook did not store it again
        assert store.history()[0]["action"] == "quarantine"
        public = stored.public()
        assert public["release"] == {
            "task": "tasks.resize",
            "queue": "images",
            "message_stored": True,
        }
        assert "s3://" not in str(public)
        assert cap.run_spans()[-1].attributes["jobpulse.action"] == "quarantine"


def test_should_quarantine_is_none_in_observe_mode() -> None:
    with capture():
        run = _lifecycle.begin_run("J", system="rq", job_id="j")
        assert should_quarantine(run, PermissionError("no")) is None
        _lifecycle.end_run(run, "error", "stop", PermissionError("no"))


def test_requarantine_keeps_first_seen() -> None:
    store = MemoryStore()
    with capture(guardrails=Guardrails(enforce=True, store=store)):
        first = None
        for attempt in (1, 2):
            run = _lifecycle.begin_run("J", system="rq", job_id="j", attempt=attempt)
            payload = should_quarantine(run, PermissionError("no"))
            assert payload is not None
            stored = quarantine(payload)
            first = first or stored.first_seen
            _lifecycle.end_run(run, "error", "quarantine", PermissionError("no"))
        assert store.get("j") is not None
        assert store.get("j").first_seen == first  # type: ignore[union-attr]
        assert store.get("j").attempts == 2  # type: ignore[union-attr]


def test_async_job_payload_has_the_same_input_fingerprint_as_a_sync_one() -> None:
    """``async def`` jobs note their arguments on failure too: the payload's input
    fingerprint is the one a plain function with the same arguments gets."""
    rules = jobpulse.guardrails.Rules(non_retryable=(BadInput,))
    with capture(guardrails=Guardrails(enforce=True, rules=rules)) as cap:

        @jobpulse.job("imports.customer_async")
        async def import_async(customer_id: int, email: str) -> None:
            await asyncio.sleep(0)
            raise BadInput(f"customer {customer_id}: email {email!r} is not valid")

        @jobpulse.job("imports.customer_sync")
        def import_sync(customer_id: int, email: str) -> None:
            raise BadInput(f"customer {customer_id}: email {email!r} is not valid")

        for customer in (42, 43):
            with pytest.raises(BadInput):
                asyncio.run(import_async(customer, email="bob@example"))
        with pytest.raises(BadInput):
            import_sync(42, email="bob@example")

        payloads = {(p.job, p.run_id): p for p in memory_store().entries()}
        assert len(payloads) == 3
        by_job: dict[str, list[str | None]] = {}
        for (job, _run_id), payload in payloads.items():
            assert payload.reason == "non_retryable"
            by_job.setdefault(job, []).append(payload.input_fingerprint)
        async_prints = by_job["imports.customer_async"]
        assert all(p is not None for p in async_prints)
        assert len(set(async_prints)) == 2  # different customers, different inputs
        assert by_job["imports.customer_sync"][0] in async_prints
        assert all(
            s.attributes["jobpulse.action"] == "quarantine"
            and s.attributes["jobpulse.system"] in ("asyncio", "function")
            for s in cap.run_spans()
        )


SECRET = "hunter2-7f3a9c"


@pytest.mark.parametrize("mode", ["off", "observe", "enforce", "enforce_per_job"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_failed_jobs_exception_carries_no_arguments(mode: str, kind: str) -> None:
    """An exception's ``__dict__`` is pickled with it (Celery result backends, pool
    pipes): the job's arguments must never be put there, in any mode."""
    rules = jobpulse.guardrails.Rules(non_retryable=(BadInput,))
    options: dict[str, object] = {"guardrails": Guardrails(rules=rules)}
    if mode == "enforce":
        options["guardrails"] = Guardrails(enforce=True, rules=rules)
    runs: list[object] = []

    def fail(customer: str, note: str) -> None:
        runs.append(jobpulse._context.current.get())
        with jobpulse.step("Validate"):
            raise BadInput("the record has no header")

    if kind == "sync":

        @jobpulse.job("J", enforce=mode == "enforce_per_job")
        def j(customer: str, *, note: str) -> None:
            fail(customer, note)

        call = lambda: j(SECRET, note=SECRET + "-kw")  # noqa: E731
    else:

        @jobpulse.job("J", enforce=mode == "enforce_per_job")
        async def j_async(customer: str, *, note: str) -> None:
            await asyncio.sleep(0)
            fail(customer, note)

        call = lambda: asyncio.run(j_async(SECRET, note=SECRET + "-kw"))  # noqa: E731

    def run_it() -> BadInput:
        with pytest.raises(BadInput) as info:
            call()
        return info.value

    if mode == "off":
        exc = run_it()
    else:
        with capture(**options):  # type: ignore[arg-type]
            exc = run_it()
            stored = memory_store().entries()
            assert len(stored) == (1 if mode.startswith("enforce") else 0)
            assert all(p.input_fingerprint is not None for p in stored)  # still fingerprinted
    assert SECRET.encode() not in pickle.dumps(exc)
    assert SECRET not in repr(vars(exc))
    assert vars(exc).get("_jobpulse_failed_step", "Validate") == "Validate"  # a step name only
    for run in runs:
        assert run is None or run.failed_inputs is None  # type: ignore[attr-defined]


def test_inputs_are_kept_on_the_run_only_when_enforced() -> None:
    from jobpulse.guardrails._notes import note_inputs

    for guardrails, kept in (({}, False), ({"enforce": True}, True),
                             ({"enforce": True, "classify": False}, False)):  # fmt: skip
        with capture(guardrails=guardrails):
            run = _lifecycle.begin_run("J", system="function")
            assert run is not None
            note_inputs(run, (SECRET,), {"k": 1})
            assert (run.failed_inputs is not None) is kept
            _lifecycle.end_run(run, "success")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_nested_jobs_get_their_own_input_fingerprints(kind: str) -> None:
    """An outer job failing with the exception of an inner job it called: each payload's
    input fingerprint is its own call's (the inner one's used to win)."""
    rules = jobpulse.guardrails.Rules(non_retryable=(BadInput,))
    with capture(guardrails=Guardrails(enforce=True, rules=rules)):
        if kind == "sync":

            @jobpulse.job("inner")
            def inner(record: int) -> None:
                raise BadInput(f"record {record} has no header")

            @jobpulse.job("outer")
            def outer(batch: str) -> None:
                inner(7)

            with pytest.raises(BadInput):
                outer("batch-1")
        else:

            @jobpulse.job("inner")
            async def inner_async(record: int) -> None:
                await asyncio.sleep(0)
                raise BadInput(f"record {record} has no header")

            @jobpulse.job("outer")
            async def outer_async(batch: str) -> None:
                await inner_async(7)

            with pytest.raises(BadInput):
                asyncio.run(outer_async("batch-1"))
        prints = {p.job: p.input_fingerprint for p in memory_store().entries()}
        assert prints == {
            "inner": input_fingerprint((7,), {}),
            "outer": input_fingerprint(("batch-1",), {}),
        }
