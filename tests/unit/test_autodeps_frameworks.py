"""autodeps: calls a job framework (celery, kombu, billiard, amqp) makes itself inside
a run are not the run's dependencies; the job's own calls are."""

from __future__ import annotations

import os
import sys
import types

import pytest

from jobpulse import autodeps


def _compiled_in(path: str) -> types.FunctionType:
    """A function whose code says it lives at ``path`` and calls ``probe()``."""
    namespace: dict[str, object] = {"framework_call": autodeps.framework_call}
    code = compile("def probe():\n    return framework_call()\n", path, "exec")
    exec(code, namespace)
    return namespace["probe"]  # type: ignore[return-value]


def test_calls_from_kombu_are_the_frameworks() -> None:
    kombu = pytest.importorskip("kombu")
    inside = os.path.join(os.path.dirname(kombu.__file__), "messaging.py")
    assert _compiled_in(inside)() is True


def test_calls_from_the_job_are_its_own() -> None:
    pytest.importorskip("celery")
    assert _compiled_in("/srv/app/tasks.py")() is False
    assert autodeps.framework_call() is False  # this test file


def test_no_framework_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in autodeps._FRAMEWORK_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(autodeps, "_framework", (0, ()))
    assert autodeps.framework_call() is False
