"""Installing and uninstalling: lazily on ``import rq``, and RQ exactly as it was after."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import rq.job
import rq.queue
import rq.registry
import rq.worker
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job

import jobpulse

from . import jobs
from .conftest import ROOT

pytestmark = pytest.mark.integration

PATCHED = [
    (rq.job.Job, "_execute"),
    (rq.queue.Queue, "create_job"),
    (rq.queue.Queue, "enqueue_call"),
    (rq.queue.Queue, "enqueue_at"),
    (rq.queue.Queue, "enqueue_many"),
    (rq.queue.Queue, "enqueue_job"),
    (rq.queue.Queue, "schedule_job"),
    (rq.queue.Queue, "_enqueue_job"),
    (rq.worker.BaseWorker, "perform_job"),
    (rq.worker.BaseWorker, "handle_exception"),
    (rq.worker.BaseWorker, "handle_work_horse_killed"),
    (rq.worker.BaseWorker, "prepare_execution"),
    (rq.worker.BaseWorker, "bootstrap"),
    (rq.worker.BaseWorker, "teardown"),
    (rq.worker.Worker, "execute_job"),
    (rq.registry.StartedJobRegistry, "cleanup"),
    (rq.registry.BaseRegistry, "get_expired_job_ids"),
]


def test_uninstrument_restores_rq_exactly(redis: Redis) -> None:
    originals = {(cls, name): cls.__dict__[name] for cls, name in PATCHED}
    jobpulse.instrument(configure_otel=False)
    for cls, name in PATCHED:
        assert cls.__dict__[name] is not originals[(cls, name)], f"{cls.__name__}.{name}"
        assert cls.__dict__[name].__wrapped__ is originals[(cls, name)]
    jobpulse.uninstrument()
    for cls, name in PATCHED:
        assert cls.__dict__[name] is originals[(cls, name)], f"{cls.__name__}.{name}"

    q = Queue("plain", connection=redis)
    job = q.enqueue(jobs.add, 1, 2)
    assert "jobpulse" not in Job.fetch(job.id, connection=redis).meta
    SimpleWorker([q], connection=redis).work(burst=True)
    assert job.return_value() == 3


def test_instrument_twice_then_uninstrument_leaves_no_wrapper(redis: Redis) -> None:
    original = rq.queue.Queue.__dict__["create_job"]
    jobpulse.instrument(configure_otel=False)
    jobpulse.instrument(configure_otel=False)
    assert rq.queue.Queue.__dict__["create_job"].__wrapped__ is original
    jobpulse.uninstrument()
    jobpulse.uninstrument()
    assert rq.queue.Queue.__dict__["create_job"] is original


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full: dict[str, Any] = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.setdefault("OTEL_TRACES_EXPORTER", "none")
    full.setdefault("OTEL_METRICS_EXPORTER", "none")
    full.setdefault("OTEL_LOGS_EXPORTER", "none")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_instrument_before_import_rq_installs_when_rq_is_imported() -> None:
    proc = _python(
        "import sys, jobpulse\n"
        "jobpulse.instrument()\n"
        "assert 'rq' not in sys.modules\n"
        "import rq.queue\n"
        "assert hasattr(rq.queue.Queue.__dict__['create_job'], '__wrapped__')\n"
        "jobpulse.uninstrument()\n"
        "assert not hasattr(rq.queue.Queue.__dict__['create_job'], '__wrapped__')\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_broken_rq_import_does_not_break_instrument() -> None:
    proc = _python(
        "import jobpulse\n"
        "jobpulse.instrument()\n"
        "try:\n"
        "    import rq\n"
        "except ValueError:\n"
        "    print('rq refused to import')\n"
        "jobpulse.uninstrument()\n",
        RQ_KEY_PREFIX="not a valid prefix",
    )
    assert proc.returncode == 0, proc.stderr
    assert "rq refused to import" in proc.stdout
