"""Dependency calls detected automatically inside runs (filled in below)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

#: True while jobpulse itself (or a detected call already being recorded) talks to a
#: dependency: nested calls are not recorded again.
_inside: ContextVar[bool] = ContextVar("jobpulse_autodeps_inside", default=False)


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """Calls made in this block are not recorded as the run's dependencies."""
    token = _inside.set(True)
    try:
        yield
    finally:
        _inside.reset(token)
