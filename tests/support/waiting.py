"""Waiting on a condition with a deadline that fails the test: the suite's only way to wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Waiter = Callable[..., Any]


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str = "", *, max_delay: float = 0.2
) -> Any:
    """Poll ``predicate`` (backing off from 10 ms to ``max_delay``) until it is truthy and
    return its value; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def waiter(default_timeout: float, *, max_delay: float = 0.2) -> Waiter:
    """:func:`wait_until` with a suite's own default deadline."""

    def wait(predicate: Callable[[], Any], timeout: float = default_timeout, what: str = "") -> Any:
        return wait_until(predicate, timeout, what, max_delay=max_delay)

    return wait
