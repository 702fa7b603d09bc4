"""The sampler loop: sources in, ``registry().queue_samples`` out.

The core's observable gauges ``jobpulse.queue.depth`` and
``jobpulse.queue.oldest.age`` read ``queue_samples[(queue, system)] =
(depth, oldest_age_or_None)`` at every collection, so the loop only keeps that
mapping true:

* a queue sampled now is written; a queue that stopped being sampled (gone
  from the broker, no longer discovered) is deleted, so its gauges stop;
* a broker that cannot be reached has all its queues deleted (no stale values
  while it is down) and one error line per outage; the source reconnects by
  itself at a later interval, and one line says the broker is back.

Only keys this sampler wrote are ever deleted, so a sampler can share a
process with other writers.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import _guard, _runtime
from .._registry import QueueKey
from ._base import BrokerUnavailable, ProbeFailure, QueueSample, Source, log


@dataclass
class _State:
    keys: set[QueueKey] = field(default_factory=set)
    down_since: float | None = None
    last_error: str = ""
    queues: tuple[str, ...] | None = None


def scrubbed(source: Source, exc: BaseException) -> ProbeFailure:
    """``exc`` with its traceback as text, through the source's scrubber: the failure is
    logged, and broker client messages may carry a URL."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        text = source.scrub(text)
    except Exception:  # noqa: BLE001 - no scrubber: keep only the exception's type
        text = type(exc).__name__
    return ProbeFailure(text)


class Sampler:
    """Samples every source every ``interval`` seconds, on a daemon thread after
    :meth:`start` or in the caller's thread with :meth:`run`. :meth:`stop` ends it and
    removes its values from the gauges."""

    def __init__(self, sources: Sequence[Source], *, interval: float = 15.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval!r}")
        self.sources = list(sources)
        self.interval = float(interval)
        self._states = [_State() for _ in self.sources]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.samples = 0  # completed passes, for tests and --once

    # -- one pass ---------------------------------------------------------------
    def sample_once(self) -> list[tuple[Source, list[QueueSample] | None]]:
        """Sample every source once; returns each source's samples (None: unavailable)."""
        results: list[tuple[Source, list[QueueSample] | None]] = []
        with self._lock:
            for source, state in zip(self.sources, self._states, strict=True):
                results.append((source, self._sample(source, state)))
            self.samples += 1
        return results

    def _sample(self, source: Source, state: _State) -> list[QueueSample] | None:
        started = time.monotonic()
        try:
            samples = source.sample(time.time())
        except BrokerUnavailable as exc:
            self._forget(state)
            self._close(source)
            if state.down_since is None:
                state.down_since = started
                log.error(
                    "jobpulse probe: cannot reach the %s broker %s (%s); its queue gauges stop "
                    "until it is back (retrying every %.3g s)",
                    source.system, source.broker, exc, self.interval,
                )  # fmt: skip
            state.last_error = str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - a bug here must not end the loop
            self._forget(state)
            self._close(source)
            _guard.report("probe", scrubbed(source, exc))
            return None
        if state.down_since is not None:
            log.info(
                "jobpulse probe: the %s broker %s is back after %.1f s",
                source.system, source.broker, started - state.down_since,
            )  # fmt: skip
            state.down_since = None
        self._publish(source, state, samples)
        return samples

    def _publish(self, source: Source, state: _State, samples: list[QueueSample]) -> None:
        registry = _runtime.registry().queue_samples
        keys = set()
        for s in samples:
            key = (s.queue, source.system)
            registry[key] = (s.depth, s.oldest_age)
            keys.add(key)
        for key in state.keys - keys:
            registry.pop(key, None)
        state.keys = keys
        queues = tuple(sorted(s.queue for s in samples))
        if queues != state.queues:
            log.info(
                "jobpulse probe: sampling %d %s queue(s) on %s: %s",
                len(queues), source.system, source.broker, ", ".join(queues) or "(none)",
            )  # fmt: skip
            state.queues = queues

    def _forget(self, state: _State) -> None:
        registry = _runtime.registry().queue_samples
        for key in state.keys:
            registry.pop(key, None)
        state.keys = set()
        state.queues = None

    @staticmethod
    def _close(source: Source) -> None:
        try:
            source.close()
        except Exception as exc:  # noqa: BLE001
            _guard.report("probe", scrubbed(source, exc))

    # -- the loop ---------------------------------------------------------------
    def run(self) -> None:
        """Sample until :meth:`stop`, at a fixed rate (a slow pass skips the missed slots)."""
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_at += self.interval
            now = time.monotonic()
            if next_at <= now:
                next_at = now + self.interval
            self._stop.wait(next_at - now)

    def start(self) -> Sampler:
        """Run on a daemon thread (``jobpulse-probe``); returns self, the handle."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="jobpulse-probe", daemon=True)
            self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current pass (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop sampling, drop this sampler's values from the gauges, close connections."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            for source, state in zip(self.sources, self._states, strict=True):
                self._forget(state)
                self._close(source)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Sampler({self.sources!r}, interval={self.interval})"


def describe(results: Sequence[tuple[Source, list[QueueSample] | None]]) -> list[str]:
    """Human-readable lines for one pass (``jobpulse probe --once``)."""
    lines = []
    for source, samples in results:
        if samples is None:
            lines.append(f"{source.system:<7} {source.broker}  unavailable")
            continue
        for s in samples:
            age = "-" if s.oldest_age is None else f"{s.oldest_age:.1f}s"
            lines.append(f"{source.system:<7} {s.queue:<30} depth={s.depth:<9} oldest_age={age}")
    return lines
