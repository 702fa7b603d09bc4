"""What every queue source gives the sampler: samples, or "the broker is unavailable"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from .. import _names as n

log = logging.getLogger(n.LOGGER_NAME + ".probe")


@dataclass(frozen=True)
class QueueSample:
    """One queue at one moment.

    ``oldest_age`` is seconds since the oldest waiting message was enqueued
    (clamped at 0), ``0.0`` for an empty queue, and ``None`` when the broker
    cannot tell (no enqueue time on the message, or no management API).
    """

    queue: str
    depth: int
    oldest_age: float | None


class BrokerUnavailable(Exception):
    """The broker could not be reached; the message is already free of credentials."""


class ProbeFailure(Exception):
    """An unexpected failure while sampling, its traceback text free of credentials."""


class Source(Protocol):
    """A broker and the queues of one system on it.

    ``sample`` costs O(1) broker round trips per queue, whatever the depth; it
    raises :class:`BrokerUnavailable` when the broker cannot be reached and
    reconnects by itself on a later call.
    """

    system: str  # "rq" or "celery": the jobpulse.system attribute
    broker: str  # the broker URL without credentials, for log lines

    def sample(self, now: float) -> list[QueueSample]: ...

    def close(self) -> None: ...

    def scrub(self, text: object) -> str:
        """``text`` without the source's URLs and credentials."""
        ...


class OnceLog:
    """Log a line once per key (a queue, a condition) until :meth:`reset`."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str, level: int, msg: str, *args: object) -> None:
        if key not in self._seen:
            self._seen.add(key)
            log.log(level, msg, *args)

    def reset(self, key: str) -> bool:
        """Forget ``key``; True when it had been logged."""
        if key in self._seen:
            self._seen.discard(key)
            return True
        return False


def age(now: float, enqueued_at: float | None) -> float | None:
    return None if enqueued_at is None else max(0.0, now - enqueued_at)
