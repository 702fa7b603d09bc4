"""`opentelemetry-instrument python worker.py` loads jobpulse with no code change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.otlp import Receiver

pytestmark = pytest.mark.integration

WORKER = """
import jobpulse

@jobpulse.job("AutoLoaded")
def work():
    jobpulse.heartbeat(processed=1)

work()
"""


def test_opentelemetry_instrument_loads_jobpulse(otlp: Receiver, tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    assert "jobpulse" in names
    command = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert command, "opentelemetry-instrument is installed with the dev extras"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, **otlp.env(), "OTEL_SERVICE_NAME": "auto"}
    proc = subprocess.run(
        [command, sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = otlp.wait_for(lambda r: r.run_spans("AutoLoaded"), what="the run span")
    assert run.attributes["jobpulse.outcome"] == "success"
    assert run.resource["service.name"] == "auto"
