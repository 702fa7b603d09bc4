"""Fixtures shared by every test: swallowed jobpulse failures raise, and an OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import jobpulse
from jobpulse import _guard

from .support.otlp import Receiver


@pytest.fixture(autouse=True)
def _raise_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failure jobpulse would swallow in production fails the test instead
    (tests of the swallowing itself carry ``@pytest.mark.allow_internal_errors``)."""
    allowed = request.node.get_closest_marker("allow_internal_errors") is not None
    previous = _guard.RAISE_INTERNAL
    _guard.RAISE_INTERNAL = not allowed
    before = _guard.counts()
    yield
    _guard.RAISE_INTERNAL = previous
    jobpulse.uninstrument()
    after = _guard.counts()
    leaked = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert allowed or not leaked, f"jobpulse swallowed internal failures: {leaked}"


@pytest.fixture
def otlp() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on 127.0.0.1 (a fresh one per test)."""
    receiver = Receiver().start()
    yield receiver
    receiver.stop()
