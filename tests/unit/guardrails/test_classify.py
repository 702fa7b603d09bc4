"""Failed runs are classified transient, poison or unknown; poison runs say quarantine."""

from __future__ import annotations

import json

import pytest

import jobpulse
from jobpulse import _lifecycle
from jobpulse._config import ConfigurationError
from jobpulse.guardrails import Failure, Guardrails, Rules, Verdict, fingerprint
from jobpulse.guardrails.classify import build_failure, classify, normalise
from jobpulse.testing import Captured, capture


class BadInput(Exception):
    pass


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("R", (), {"status_code": status})()


def verdict(exc: BaseException, cfg: Guardrails | None = None, **kw: object) -> Verdict:
    failure = build_failure(
        job_name=str(kw.get("job", "J")),
        system="celery",
        job_id=str(kw.get("job_id", "id-1")),
        attempt=int(kw.get("attempt", 1)),  # type: ignore[call-overload]
        outcome=str(kw.get("outcome", "error")),
        exc=exc,
        error_type=None,
    )
    return classify(failure, cfg or Guardrails(), run_id=str(kw.get("run_id", "r1"))).verdict


def end_failed(
    job: str, exc: BaseException, *, job_id: str, attempt: int, action: str = "retry"
) -> None:
    run = _lifecycle.begin_run(job, system="celery", job_id=job_id, attempt=attempt, queue="q")
    _lifecycle.end_run(run, "error", action, exc)


def span_of(cap: Captured, attempt: int) -> dict[str, object]:
    spans = [s for s in cap.run_spans() if s.attributes["jobpulse.attempt"] == attempt]
    return dict(spans[-1].attributes or {})


class TestFingerprint:
    def test_numbers_and_ids_are_stripped(self) -> None:
        """Messages that differ only in numbers, hex ids and uuids share a fingerprint."""
        a = "row 17 of batch 3f2a9c01d4 failed (order 1d3c1a0e-9b4f-4c37-8a8e-0c5e4ad1f9b2)"
        b = "row 18 of batch 77b1aa00ff failed (order 7e0e1b2c-1111-4c37-8a8e-0c5e4ad1f9b3)"
        assert normalise(a) == normalise(b)
        assert fingerprint("ValueError", a) == fingerprint("ValueError", b)

    def test_type_and_words_matter(self) -> None:
        assert fingerprint("ValueError", "bad row") != fingerprint("KeyError", "bad row")
        assert fingerprint("ValueError", "bad row") != fingerprint("ValueError", "bad column")


class TestRules:
    def test_builtin_transient(self) -> None:
        """Connection errors, timeouts and throttling are transient, however often they repeat."""
        assert verdict(ConnectionResetError("reset")) is Verdict.TRANSIENT
        assert verdict(TimeoutError("slow"), attempt=2, run_id="r2") is Verdict.TRANSIENT
        assert verdict(type("ThrottlingException", (Exception,), {})("slow down")) is (
            Verdict.TRANSIENT
        )
        assert verdict(HTTPError(429)) is Verdict.TRANSIENT

    def test_builtin_poison(self) -> None:
        """Validation, decoding, permission and auth errors are poison on the first failure."""
        assert verdict(json.JSONDecodeError("x", "doc", 0)) is Verdict.POISON
        assert verdict(PermissionError("no")) is Verdict.POISON
        assert verdict(type("ValidationError", (ValueError,), {})("bad")) is Verdict.POISON
        assert verdict(type("AuthenticationError", (Exception,), {})("bad")) is Verdict.POISON
        assert verdict(HTTPError(403)) is Verdict.POISON

    def test_own_budget_timeout_is_not_transient(self) -> None:
        """A run's own max runtime is not a dependency timeout: it can be poison by repetition."""
        exc = jobpulse.BudgetExceeded("J", "max_runtime", 5, 5.2)
        assert verdict(exc, outcome="timeout") is Verdict.UNKNOWN
        assert verdict(exc, outcome="timeout", attempt=2, run_id="r2") is Verdict.POISON

    def test_user_types_and_names(self) -> None:
        """Users list types by class, qualified name or bare name; per-job rules come first."""
        cfg = Guardrails(
            rules=Rules(non_retryable=(BadInput,), transient=("KeyError",)),
            jobs={"imports.*": Rules(transient=(BadInput,))},
        )
        assert verdict(BadInput("x"), cfg) is Verdict.POISON
        assert verdict(KeyError("x"), cfg, job_id="id-4") is Verdict.TRANSIENT
        assert verdict(BadInput("x"), cfg, job="imports.csv", job_id="id-2") is Verdict.TRANSIENT
        qualified = Guardrails(rules=Rules(non_retryable=(f"{__name__}.BadInput",)))
        assert verdict(BadInput("x"), qualified, job_id="id-3") is Verdict.POISON

    def test_predicates_decide_first(self) -> None:
        """A predicate sees the failure and may decide; None passes to the next rule."""
        seen: list[Failure] = []

        def tenant_gone(failure: Failure) -> str | None:
            seen.append(failure)
            return "poison" if "tenant deleted" in failure.message else None

        cfg = Guardrails(rules=Rules(predicates=(tenant_gone,)))
        assert verdict(ConnectionError("tenant deleted"), cfg) is Verdict.POISON
        assert verdict(ConnectionError("reset"), cfg, job_id="id-2") is Verdict.TRANSIENT
        assert seen[0].error_type == "ConnectionError"
        assert seen[0].job_name == "J"

    def test_defaults_can_be_switched_off(self) -> None:
        cfg = Guardrails(rules=Rules(defaults=False))
        assert verdict(PermissionError("no"), cfg) is Verdict.UNKNOWN

    def test_bad_rules_fail_early(self) -> None:
        with pytest.raises(ValueError, match="not an error type"):
            Rules(non_retryable=(42,))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="repeats"):
            Rules(repeats=1)


class TestRepetition:
    def test_same_error_on_consecutive_attempts_is_poison(self) -> None:
        """Attempt 1 is unknown; attempt 2 with the same type and fingerprint is poison."""
        assert verdict(ValueError("bad row 17"), attempt=1, run_id="r1") is Verdict.UNKNOWN
        assert verdict(ValueError("bad row 17"), attempt=2, run_id="r2") is Verdict.POISON

    def test_a_different_error_starts_over(self) -> None:
        assert verdict(ValueError("bad row"), attempt=1, run_id="r1") is Verdict.UNKNOWN
        assert verdict(KeyError("missing"), attempt=2, run_id="r2") is Verdict.UNKNOWN
        assert verdict(KeyError("missing"), attempt=3, run_id="r3") is Verdict.POISON

    def test_other_job_ids_do_not_count(self) -> None:
        assert verdict(ValueError("bad"), job_id="a") is Verdict.UNKNOWN
        assert verdict(ValueError("bad"), job_id="b", run_id="r2") is Verdict.UNKNOWN

    def test_the_same_run_classified_twice_agrees(self) -> None:
        """A child's span and its parent's counter classify one run: same answer."""
        assert verdict(ValueError("bad"), attempt=1, run_id="r1") is Verdict.UNKNOWN
        assert verdict(ValueError("bad"), attempt=2, run_id="r2") is Verdict.POISON
        assert verdict(ValueError("bad"), attempt=2, run_id="r2") is Verdict.POISON
        # the parent may not know the run id: the attempt identifies the run then
        failure = build_failure(
            job_name="J",
            system="celery",
            job_id="id-1",
            attempt=2,
            outcome="error",
            exc=ValueError("bad"),
            error_type=None,
        )
        assert classify(failure, Guardrails(), run_id=None).repeats == 2

    def test_repeats_is_configurable(self) -> None:
        cfg = Guardrails(rules=Rules(repeats=3))
        assert verdict(ValueError("bad"), cfg, attempt=1, run_id="r1") is Verdict.UNKNOWN
        assert verdict(ValueError("bad"), cfg, attempt=2, run_id="r2") is Verdict.UNKNOWN
        assert verdict(ValueError("bad"), cfg, attempt=3, run_id="r3") is Verdict.POISON

    def test_the_memory_is_bounded(self) -> None:
        from jobpulse.guardrails import memory

        cfg = Guardrails(memory_size=5)
        for i in range(20):
            verdict(ValueError("bad"), cfg, job_id=f"job-{i}")
        assert len(memory._local) == 5


class TestObserveMode:
    def test_poison_run_says_quarantine_and_behaves_as_before(self) -> None:
        """Observe mode: action quarantine on the span and in the counter; nothing stored."""
        with capture() as cap:
            end_failed("tasks.import", ValueError("bad row 7"), job_id="j1", attempt=1)
            end_failed("tasks.import", ValueError("bad row 7"), job_id="j1", attempt=2)
            first, second = span_of(cap, 1), span_of(cap, 2)
            assert first["jobpulse.action"] == "retry"
            assert first["jobpulse.failure.class"] == "unknown"
            assert second["jobpulse.action"] == "quarantine"
            assert second["jobpulse.failure.class"] == "poison"
            assert second["jobpulse.failure.reason"] == "repeated"
            assert second["jobpulse.error.fingerprint"] == first["jobpulse.error.fingerprint"]
            assert cap.metric("jobpulse.job.runs", **{"jobpulse.action": "quarantine"}) == 1
            from jobpulse.guardrails._quarantine import memory_store

            assert memory_store().entries() == []

    def test_transient_keeps_the_adapters_action(self) -> None:
        with capture() as cap:
            end_failed("tasks.fetch", ConnectionError("reset"), job_id="j1", attempt=1)
            end_failed("tasks.fetch", ConnectionError("reset"), job_id="j1", attempt=2)
            assert span_of(cap, 2)["jobpulse.action"] == "retry"
            assert span_of(cap, 2)["jobpulse.failure.class"] == "transient"

    def test_parent_counter_agrees_with_the_child_span(self) -> None:
        """count_run with the run's ids gives the same action the span got."""
        with capture() as cap:
            end_failed("tasks.import", ValueError("bad"), job_id="j1", attempt=1)
            end_failed("tasks.import", PermissionError("no"), job_id="j1", attempt=2)
            _lifecycle.count_run(
                "tasks.import",
                system="celery",
                queue="q",
                outcome="error",
                action="retry",
                exc=PermissionError("no"),
                job_id="j1",
                attempt=2,
            )
            assert cap.metric("jobpulse.job.runs", **{"jobpulse.action": "quarantine"}) == 2

    def test_lost_twice_is_poison(self) -> None:
        """A job that kills its worker on every attempt is a poison pill."""
        with capture() as cap:
            for attempt in (1, 2):
                _lifecycle.record_run(
                    "tasks.resize",
                    system="celery",
                    outcome="lost",
                    action="retry",
                    job_id="j9",
                    attempt=attempt,
                )
            spans = cap.run_spans("tasks.resize")
            assert [s.attributes["jobpulse.action"] for s in spans] == ["retry", "quarantine"]
            assert spans[1].attributes["jobpulse.failure.class"] == "poison"

    def test_success_and_cancel_are_untouched(self) -> None:
        with capture() as cap:
            run = _lifecycle.begin_run("J", system="celery", job_id="j1")
            _lifecycle.end_run(run, "success")
            assert "jobpulse.failure.class" not in (cap.run_spans()[0].attributes or {})

    def test_classification_can_be_switched_off(self) -> None:
        with capture(guardrails={"classify": False}) as cap:
            end_failed("J", PermissionError("no"), job_id="j1", attempt=1, action="stop")
            assert span_of(cap, 1)["jobpulse.action"] == "stop"


class TestConfiguration:
    def test_mapping_and_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``guardrails`` takes a Guardrails, a mapping, or JSON in JOBPULSE_GUARDRAILS."""
        monkeypatch.setenv(
            "JOBPULSE_GUARDRAILS", json.dumps({"enforce": True, "non_retryable": ["BadInput"]})
        )
        with capture() as cap:
            end_failed("J", BadInput("x"), job_id="j1", attempt=1)
            assert span_of(cap, 1)["jobpulse.action"] == "quarantine"

    def test_bad_values_name_the_setting(self) -> None:
        with pytest.raises(ConfigurationError, match=r"instrument\(guardrails=...\).*unknown key"):
            jobpulse.instrument(guardrails={"enforced": True})
        with pytest.raises(ConfigurationError, match="enforce must be"):
            jobpulse.instrument(guardrails={"enforce": "yes"})
