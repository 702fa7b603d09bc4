"""examples/rq/ runs as its README says and gives what the README promises.

The producer (``enqueue.py``) and a forking ``rq worker -c settings
--with-scheduler`` run as real processes from the example's own directory,
with only the environment the README sets (``REDIS_URL``, ``OTEL_*``), against
the real Redis and the suite's OTLP receiver.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.support.otlp import Receiver, Span

from .conftest import REDIS_URL, ROOT, Workers, runs

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "rq"
EXPORT, REPORT, FLAKY = "jobs.nightly_export", "jobs.send_report", "jobs.flaky_sync"


def _env(otlp: Receiver, service: str) -> dict[str, str]:
    # The example's own directory comes first on the path (the script's, or the cwd
    # for ``-m``): its ``jobs`` and ``settings`` are the ones imported.
    return {**os.environ, **otlp.env(), "REDIS_URL": REDIS_URL, "OTEL_SERVICE_NAME": service}


def _children(otlp: Receiver, parent: Span) -> dict[str, Span]:
    return {s.name: s for s in otlp.spans if s.parent_span_id == parent.span_id}


def _sent(otlp: Receiver, run: Span) -> Span:
    """The producer's ``send`` span the run links to (exported by enqueue.py)."""
    found = [s for s in otlp.spans if (s.trace_id, s.span_id) in run.links]
    assert found, f"run {run.name} links to no span the receiver has"
    return found[0]


def test_the_rq_example_runs_as_its_readme_says(
    redis: Redis, workers: Workers, otlp: Receiver
) -> None:
    enqueued_ns = time.time_ns()
    enqueue = subprocess.run(
        [sys.executable, "enqueue.py"], cwd=EXAMPLE, env=_env(otlp, "shop-web"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert enqueue.returncode == 0, enqueue.stderr
    assert "enqueued 4 jobs on 'default'" in enqueue.stdout

    worker = subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "-c", "settings", "--with-scheduler"],
        cwd=EXAMPLE, env=_env(otlp, "shop-rq"), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    workers.procs.append(worker)  # stopped by the fixture whatever happens

    def finished(r: Receiver) -> Any:
        flaky = r.run_spans(FLAKY)
        done = [s for s in flaky if s.attributes["jobpulse.action"] in ("none", "stop")]
        # the enqueue_in job is due 10 s after enqueue.py ran
        return len(r.run_spans(EXPORT)) == 2 and r.run_spans(REPORT) and done

    otlp.wait_for(finished, 60, what="both exports, the report and the last flaky attempt")
    out = workers.stop(worker)
    assert worker.returncode == 0, out

    exports = sorted(otlp.run_spans(EXPORT), key=lambda s: s.start_ns)
    for run in exports:
        assert run.attributes["jobpulse.outcome"] == "success"
        assert run.attributes["jobpulse.budget.max_runtime"] == 600.0  # the job_timeout
        assert run.attributes["jobpulse.progress.processed"] == 200
        assert run.resource["service.name"] == "shop-rq"
        sent = _sent(otlp, run)
        assert sent.name == f"send {EXPORT}"
        assert sent.resource["service.name"] == "shop-web"
        steps = _children(otlp, run)
        assert set(steps) == {"FetchOrders", "ExportOrders", "Upload"}
        assert set(_children(otlp, steps["FetchOrders"])) == {"sql:orders-db"}
        assert set(_children(otlp, steps["Upload"])) == {"http:VendorApi"}
    # enqueue_in(10 s): the queue wait counts from when it was due, not from enqueue
    # (RQ keeps due times in whole seconds and its scheduler moves jobs every second)
    assert exports[1].start_ns >= enqueued_ns + 8e9
    assert exports[1].attributes["jobpulse.queue.wait"] < 5.0

    (report,) = otlp.run_spans(REPORT)
    assert report.attributes["jobpulse.outcome"] == "success"
    # depends_on: its queue wait starts when nightly_export released it, not at enqueue
    # (enqueue.py ran before the worker started nightly_export)
    assert report.start_ns >= exports[0].end_ns
    assert report.attributes["jobpulse.queue.wait"] <= (report.start_ns - exports[0].start_ns) / 1e9

    attempts = sorted(otlp.run_spans(FLAKY), key=lambda s: s.attributes["jobpulse.attempt"])
    assert [s.attributes["jobpulse.attempt"] for s in attempts] == list(range(1, len(attempts) + 1))
    assert len(attempts) <= 4  # Retry(max=3)
    assert len({s.attributes["jobpulse.job.id"] for s in attempts}) == 1
    for failed in attempts[:-1]:
        assert failed.attributes["jobpulse.outcome"] == "error"
        assert failed.attributes["jobpulse.action"] == "retry"
        assert failed.attributes["error.type"] == "ConnectionError"
    last = attempts[-1].attributes
    assert (last["jobpulse.outcome"], last["jobpulse.action"]) in (
        ("success", "none"),
        ("error", "stop"),
    )
    for previous, attempt in itertools.pairwise(attempts):
        assert (previous.trace_id, previous.span_id) in attempt.links

    # Counted by the worker process, once per run.
    otlp.wait_for(lambda r: runs(r, EXPORT) == 2, what="the exports counted")
    assert runs(otlp, REPORT) == 1
    assert runs(otlp, FLAKY) == len(attempts)
    assert {p.attributes["jobpulse.queue.name"] for p in otlp.latest("jobpulse.job.runs")} == {
        "default"
    }


@pytest.mark.parametrize("flags", [["--simple", "--burst"], ["--burst"]], ids=["simple", "fork"])
def test_the_examples_worker_script_runs_both_worker_classes(
    redis: Redis, workers: Workers, otlp: Receiver, flags: list[str]
) -> None:
    """``python worker.py [--simple]``: the same telemetry from a worker started in code."""
    env = _env(otlp, "shop-rq")
    subprocess.run(
        [sys.executable, "enqueue.py"], cwd=EXAMPLE, env={**env, "OTEL_SERVICE_NAME": "shop-web"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "worker.py", *flags], cwd=EXAMPLE, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = otlp.wait_for(lambda r: r.run_spans(EXPORT), what="the export's run span")
    assert run.attributes["jobpulse.outcome"] == "success"
    assert run.resource["service.name"] == "shop-rq"
    assert set(_children(otlp, run)) == {"FetchOrders", "ExportOrders", "Upload"}
    otlp.wait_for(lambda r: r.run_spans(REPORT) and r.run_spans(FLAKY), what="the other runs")
    # the worker flushed its counts at exit (burst mode ends the process)
    assert runs(otlp, EXPORT) == 1
    assert runs(otlp, REPORT) == 1


def test_the_readme_quick_start_is_the_examples_settings() -> None:
    """The README's RQ quick start: the same statements and command as examples/rq."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start: RQ", 1)[1].split("\n## ", 1)[0]
    settings_block, command_block = re.findall(r"```\w*\n(.*?)```", section, re.S)[:2]
    settings = (EXAMPLE / "settings.py").read_text()
    for line in settings_block.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "REDIS_URL")):
            assert re.search(rf"^{re.escape(line)}$", settings, re.M), line
    assert "REDIS_URL" in settings  # read from the environment in the example
    command = command_block.strip().split()
    assert command[-3:] == ["worker", "-c", "settings"]
    assert "rq worker -c settings" in Path(EXAMPLE / "README.md").read_text()
