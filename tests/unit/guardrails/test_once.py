"""jobpulse.once: a side effect done at most once per key, recoverably after a crash."""

from __future__ import annotations

import asyncio

import pytest

import jobpulse
from jobpulse.guardrails import OnceInProgress, OnceUnknownProgress
from jobpulse.guardrails._once import MemoryOnceStore, resolve
from jobpulse.testing import Captured, capture


def once_events(cap: Captured) -> list[str]:
    return [
        str(e.attributes["jobpulse.once.result"])
        for s in cap.run_spans()
        for e in s.events
        if e.name == "jobpulse.once"
    ]


def test_the_first_run_does_it_later_runs_skip_and_say_so() -> None:
    done: list[int] = []
    with capture() as cap:

        @jobpulse.job("Billing")
        def bill() -> None:
            with jobpulse.once("invoice:42") as claim:
                if claim:
                    done.append(1)

        bill()
        bill()
        assert done == [1]
        assert once_events(cap) == ["performed", "skipped"]
        skipped = [r for r in cap.logs if "skipped" in r.getMessage()]
        assert getattr(skipped[0], "jobpulse.once.key") == "invoice:42"
        assert getattr(skipped[0], "jobpulse.job.name") == "Billing"


def test_decorator_with_a_key_template() -> None:
    sent: list[str] = []

    @jobpulse.once("mail:{user}:{kind}", ttl=60)
    def send(user: str, kind: str = "welcome") -> str:
        sent.append(user)
        return "sent"

    assert send("ann") == "sent"
    assert send("ann") is None
    assert send("bob") == "sent"
    assert send(user="ann", kind="reminder") == "sent"
    assert sent == ["ann", "bob", "ann"]


def test_callable_key_and_async() -> None:
    sent: list[int] = []

    @jobpulse.once(lambda order: f"charge:{order}")
    async def charge(order: int) -> int:
        await asyncio.sleep(0)
        sent.append(order)
        return order

    async def main() -> list[int | None]:
        out = [await charge(1), await charge(1)]
        async with jobpulse.once("charge:2") as claim:
            if claim:
                sent.append(2)
        async with jobpulse.once("charge:2") as claim:
            assert not claim
        return out

    assert asyncio.run(main()) == [1, None]
    assert sent == [1, 2]


def test_an_exception_releases_the_claim() -> None:
    """The block raising means it did not happen: a later run tries again."""
    calls: list[int] = []

    @jobpulse.once("flaky")
    def side_effect() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("smtp down")

    with pytest.raises(ConnectionError):
        side_effect()
    side_effect()
    side_effect()
    assert calls == [1, 1]


def test_a_live_claim_makes_others_wait_transiently() -> None:
    with capture() as cap:
        store = MemoryOnceStore()

        @jobpulse.job("J", max_attempts=3)
        def j() -> None:
            with jobpulse.once("k", store=store) as claim:
                assert claim
                with jobpulse.once("k", store=store):
                    pass  # never reached

        with pytest.raises(OnceInProgress):
            j()
        span = cap.run_spans()[0]
        assert span.attributes["jobpulse.failure.class"] == "transient"
        # the outer block raised, so its claim was released
        assert store.get("k") is None


def _dead_claim(store: MemoryOnceStore, key: str) -> None:
    """A claim whose owner died inside the block: pending, lease expired."""
    status, _ = store.claim(key, "dead-token", 3600, 60, "run-that-died", "J")
    assert status == "claimed"
    store._keys[key]["lease_until"] = 0.0


def test_unknown_progress_escalates_and_never_redoes() -> None:
    store = MemoryOnceStore()
    _dead_claim(store, "charge:7")
    charged: list[int] = []
    with capture() as cap:

        @jobpulse.job("Charge")
        def charge() -> None:
            with jobpulse.once("charge:7", store=store) as claim:
                if claim:
                    charged.append(7)

        for _ in range(2):
            with pytest.raises(OnceUnknownProgress, match="run-that-died"):
                charge()
        assert charged == []
        spans = cap.run_spans()
        assert [s.attributes["jobpulse.action"] for s in spans] == ["escalate", "escalate"]
        assert once_events(cap) == ["unknown", "unknown"]
        errors = [r for r in cap.logs if "progress unknown" in r.getMessage()]
        assert errors[0].levelname == "ERROR"

        # the operator checks and answers: it was done
        assert resolve("charge:7", done=True, store=store)
        charge()
        assert charged == []
        assert once_events(cap)[-1] == "skipped"


def test_recover_decides_for_a_dead_claim() -> None:
    store = MemoryOnceStore()
    _dead_claim(store, "a")
    _dead_claim(store, "b")
    done: list[str] = []
    with capture() as cap:

        @jobpulse.job("J")
        def j(key: str, was_done: bool) -> None:
            with jobpulse.once(key, store=store, recover=lambda k: was_done) as claim:
                if claim:
                    done.append(key)

        j("a", True)  # recover: it was done -> marked done, skipped
        j("b", False)  # recover: it was not -> taken over, done now
        j("b", False)
        assert done == ["b"]
        assert once_events(cap) == ["recovered", "taken_over", "performed", "skipped"]
        assert store.get("a")["state"] == "done"  # type: ignore[index]


def test_interruption_inside_the_block_is_a_crash() -> None:
    """KeyboardInterrupt/cancellation leave the key pending: progress is unknown."""
    store = MemoryOnceStore()

    def interrupted() -> None:
        with jobpulse.once("k", store=store) as claim:
            assert claim
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert store.get("k")["state"] == "pending"  # type: ignore[index]


def test_ttl_forgets() -> None:
    store = MemoryOnceStore()
    with jobpulse.once("k", store=store, ttl=60) as claim:
        assert claim
    store._keys["k"]["expires"] = 0.0
    with jobpulse.once("k", store=store) as claim:
        assert claim


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        jobpulse.once("k", ttl=0)
    with pytest.raises(ValueError, match="key"):
        jobpulse.once("")
