"""jobpulse.once on Redis: atomic across threads and processes, and a SIGKILLed owner
leaves a key a later run recovers from without doing the side effect twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import jobpulse
from jobpulse.guardrails import OnceInProgress, OnceUnknownProgress
from jobpulse.guardrails._once import RedisOnceStore, resolve
from jobpulse.testing import capture

from .conftest import REDIS_URL, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_threads_race_one_performs(redis_db: Any) -> None:
    store = RedisOnceStore(redis_db)
    performed: list[int] = []
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait(10)
        try:
            with jobpulse.once("invoice:9", store=store) as claim:
                if claim:
                    performed.append(i)
            outcomes.append(claim.result)
        except OnceInProgress:
            outcomes.append("in_progress")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(performed) == 1
    assert outcomes.count("performed") == 1
    assert set(outcomes) <= {"performed", "skipped", "in_progress"}
    assert store.get("invoice:9")["state"] == "done"  # type: ignore[index]
    ttl = redis_db.pttl("jobpulse:once:invoice:9")
    assert 0 < ttl <= 86400 * 1000


def test_sigkill_inside_the_block(redis_db: Any) -> None:
    """Owner SIGKILLed inside the block: while its lease lasts a later run is told to wait
    (transient); after it, the later run escalates instead of redoing the side effect;
    ``recover=`` or an operator's ``resolve`` settle it. The effect happened exactly once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBPULSE_REDIS_URL": REDIS_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.guardrails.once_child", "charge:1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: redis_db.get("inside") or proc.poll() is not None, what="the block")
        assert proc.poll() is None, proc.communicate()[0]
        pid = int(redis_db.get("inside"))
        assert pid == proc.pid

        key = "charge:1"
        with capture(guardrails={"redis": REDIS_URL}) as cap:

            @jobpulse.job("Billing.charge")
            def charge(recover: Any = None) -> None:
                with jobpulse.once(key, recover=recover) as claim:
                    if claim:
                        redis_db.rpush("effects", "charged again")

            # the owner is alive inside the block: wait, do not redo
            with pytest.raises(OnceInProgress):
                charge()

            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            state = redis_db.hgetall("jobpulse:once:charge:1")
            assert state[b"state"] == b"pending"

            def lease_expired() -> bool:
                seconds, micros = redis_db.time()
                return seconds * 1000 + micros // 1000 > int(state[b"lease_until"])

            wait_until(lease_expired, what="the dead owner's lease to expire")
            with pytest.raises(OnceUnknownProgress, match="may or may not have happened"):
                charge()
            spans = cap.run_spans("Billing.charge")
            assert spans[0].attributes["jobpulse.failure.class"] == "transient"
            assert spans[1].attributes["jobpulse.action"] == "escalate"

            # recover= answers "was it done?" from the side effect's own record
            charge(recover=lambda k: redis_db.llen("effects") > 0)
            assert redis_db.hget("jobpulse:once:charge:1", "state") == b"done"
            charge()  # done: skipped
            events = [
                e.attributes["jobpulse.once.result"]
                for s in cap.run_spans("Billing.charge")
                for e in s.events
                if e.name == "jobpulse.once"
            ]
            assert events == ["in_progress", "unknown", "recovered", "skipped"]
        assert redis_db.lrange("effects", 0, -1) == [f"charged by {pid}".encode()]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_operator_resolves_a_dead_claim(redis_db: Any) -> None:
    store = RedisOnceStore(redis_db)
    status, _ = store.claim("k", "dead", 60, 0.001, "run-1", "J")
    assert status == "claimed"
    wait_until(
        lambda: store.claim("k", "t2", 60, 60, "run-2", "J")[0] == "expired",
        what="the lease to expire",
    )
    assert resolve("k", done=False, store=store)
    with jobpulse.once("k", store=store) as claim:
        assert claim
    assert store.get("k")["state"] == "done"  # type: ignore[index]
