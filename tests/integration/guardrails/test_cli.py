"""``jobpulse quarantine``: list, show, drop and the review log against the Redis store."""

from __future__ import annotations

import json
from typing import Any

import pytest

import jobpulse
from jobpulse._cli import main
from jobpulse.testing import capture

from .conftest import REDIS_URL

pytestmark = pytest.mark.integration


def test_review_an_in_process_job(redis_db: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with capture(guardrails={"enforce": True, "redis": REDIS_URL}):

        @jobpulse.job("imports.customer")
        def imp(customer: int) -> None:
            with jobpulse.step("Validate"):
                raise PermissionError(f"no access to bucket {customer}")

        with pytest.raises(PermissionError):
            imp(3)
    [qid] = [k.decode() for k in redis_db.zrange("jobpulse:quarantine:index", 0, -1)]

    assert main(["quarantine", "--redis", REDIS_URL, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["id"] == qid
    assert listed["step"] == "Validate"

    assert main(["quarantine", "--redis", REDIS_URL, "show", qid]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["job"] == "imports.customer"
    assert shown["error_type"] == "PermissionError"
    assert shown["suggested_action"]

    assert main(["quarantine", "--redis", REDIS_URL, "release", qid]) == 0
    assert "nothing to re-enqueue" in capsys.readouterr().out
    assert main(["quarantine", "--redis", REDIS_URL, "release", qid]) == 1
    assert "is released, not quarantined" in capsys.readouterr().err
    assert main(["quarantine", "--redis", REDIS_URL, "list"]) == 0
    assert "no quarantined jobs" in capsys.readouterr().out

    assert main(["quarantine", "--redis", REDIS_URL, "drop", qid]) == 0
    assert main(["quarantine", "--redis", REDIS_URL, "show", qid]) == 1
    capsys.readouterr()
    assert main(["quarantine", "--redis", REDIS_URL, "log"]) == 0
    log = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in log] == ["drop", "release", "quarantine"]


def test_no_store(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("JOBPULSE_REDIS_URL", raising=False)
    assert main(["quarantine", "--redis", "", "list"]) == 2
    assert "JOBPULSE_REDIS_URL" in capsys.readouterr().err
