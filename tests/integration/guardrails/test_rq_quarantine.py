"""Enforce mode with a real RQ worker: a poison job goes to the failed registry with no
retries left and the payload in its meta; ``jobpulse quarantine release`` requeues it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobpulse.guardrails import RedisStore
from tests.support.otlp import Receiver

from .conftest import REDIS_URL

rq = pytest.importorskip("rq")
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_poison_rq_job_is_quarantined_and_released(redis_db: Any, otlp: Receiver) -> None:
    env = {**os.environ, **otlp.env(), "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "rq-guard"}
    queue = rq.Queue("images", connection=redis_db)
    job = queue.enqueue("tests.integration.guardrails.jobs.resize", 7, retry=rq.Retry(max=5))
    worker = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--burst",
        "-u",
        REDIS_URL,
        "-c",
        "tests.integration.guardrails.rq_settings",
        "images",
    ]
    output = run(worker, env)

    job.refresh()
    assert job.get_status() == "failed"
    assert job.id in rq.registry.FailedJobRegistry("images", connection=redis_db)
    meta = job.meta["jobpulse_quarantine"]
    assert meta["reason"] == "repeated"
    assert meta["attempts"] == 2  # not the 6 RQ would have made
    assert meta["error_type"] == "ValueError"
    assert meta["release"] == {"job_id": job.id, "queue": "images", "message_stored": False}

    stored = RedisStore(redis_db).get(job.id)
    assert stored is not None
    assert stored.job == "tests.integration.guardrails.jobs.resize"
    assert stored.system == "rq"
    assert stored.queue == "images"
    assert stored.input_fingerprint is not None
    assert stored.trace_id is not None

    try:
        otlp.wait_for(lambda r: len(r.run_spans()) == 2, what="two run spans")
    except AssertionError as exc:  # seen once in CI (1 of 2): keep what tells why
        logs = [(log.body, log.attributes.get("jobpulse.component")) for log in otlp.logs]
        raise AssertionError(f"{exc}; logs: {logs}; worker output: {output[-3000:]}") from None
    actions = sorted(s.attributes["jobpulse.action"] for s in otlp.run_spans())
    assert actions == ["quarantine", "retry"]
    otlp.wait_for(
        lambda r: r.total("jobpulse.job.runs", **{"jobpulse.action": "quarantine"}) >= 1,
        what="the parent's counter",
    )
    assert stored.trace_id in {s.trace_id for s in otlp.run_spans()}

    cli = [sys.executable, "-m", "jobpulse", "quarantine", "--redis", REDIS_URL]
    listing = run([*cli, "list"], env)
    assert job.id in listing
    assert "ValueError" in listing
    redis_db.set("fixed:7", "1")
    out = run([*cli, "release", job.id], env)
    assert f"requeued RQ job {job.id}" in out
    job.refresh()
    assert job.get_status() == "queued"
    assert "jobpulse_quarantine" not in job.meta

    run(worker, env)
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == "resized"
    log = run([*cli, "log"], env)
    assert "release" in log
    assert "quarantine" in log


@pytest.mark.parametrize(("enforce", "runs"), [(True, 2), (False, 4)])
def test_retries_stop_at_the_jobpulse_budget(
    redis_db: Any, otlp: Receiver, enforce: bool, runs: int
) -> None:
    """``Retry(max=3)`` would make 4 attempts; enforce mode stops at the jobpulse budget's
    ``max_attempts`` (2, rq_settings), observe mode leaves RQ's decision alone."""
    env = {
        **os.environ,
        **otlp.env(),
        "PYTHONPATH": str(ROOT),
        "OTEL_SERVICE_NAME": "rq-guard",
        "JP_GUARD_ENFORCE": "1" if enforce else "0",
    }
    queue = rq.Queue("vendors", connection=redis_db)
    job = queue.enqueue("tests.integration.guardrails.jobs.fetch", "acme", retry=rq.Retry(max=3))
    worker = [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "-u", REDIS_URL,
        "-c", "tests.integration.guardrails.rq_settings", "vendors",
    ]  # fmt: skip
    run(worker, env)

    job.refresh()
    assert job.get_status() == "failed"
    assert job.id in rq.registry.FailedJobRegistry("vendors", connection=redis_db)
    assert int(redis_db.get(f"runs:{job.id}")) == runs
    assert job.retries_left == 0
    assert "jobpulse_quarantine" not in job.meta  # transient: not quarantined
    otlp.wait_for(lambda r: len(r.run_spans()) == runs, what=f"{runs} run spans")
    spans = sorted(otlp.run_spans(), key=lambda s: s.attributes["jobpulse.attempt"])
    assert [s.attributes["jobpulse.action"] for s in spans] == ["retry"] * (runs - 1) + ["stop"]
    assert RedisStore(redis_db).entries() == []
