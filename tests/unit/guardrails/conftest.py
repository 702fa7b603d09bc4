"""Each guardrails test starts with empty in-process memory and stores, and no Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobpulse.guardrails import _once as once
from jobpulse.guardrails import _quarantine as quarantine
from jobpulse.guardrails import memory


@pytest.fixture(autouse=True)
def _fresh_guardrails(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOBPULSE_REDIS_URL", raising=False)
    monkeypatch.delenv("JOBPULSE_GUARDRAILS", raising=False)
    memory.clear_local()
    monkeypatch.setattr(quarantine, "_memory_store", quarantine.MemoryStore())
    monkeypatch.setattr(once, "_memory", once.MemoryOnceStore())
    yield
    memory.clear_local()
