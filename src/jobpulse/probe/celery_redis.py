"""Celery queues on Redis (kombu's redis transport).

What kombu does (kombu/transport/redis.py, 5.x):

* a queue is a Redis list per priority step: the queue name for step 0 and
  ``{queue}{sep}{step}`` for the others (``priority_steps`` default
  ``[0, 3, 6, 9]``, ``sep`` default ``"\\x06\\x16"``; Celery's docs suggest
  ``sep=":"`` and ``priority_steps=list(range(10))``);
* publishing is LPUSH and consuming is BRPOP/RPOP, so the oldest message of
  each list is at the right end: LINDEX -1;
* a message is a JSON envelope whose ``headers`` are the protocol-2 task
  headers, where the jobpulse Celery adapter puts ``jobpulse_enqueued_at``
  (unix seconds, a string);
* queue bindings live in the sets ``_kombu.binding.{exchange}`` with members
  ``routing_key{sep}pattern{sep}queue``; ``global_keyprefix`` prefixes every key.

Depth is the sum of the lists' lengths (the messages waiting; messages a
worker has prefetched sit in kombu's ``unacked`` hash and are not counted).
The oldest age is the largest age among the tails of the priority lists that
carry the header (a lower bound when some tail has none; ``None`` when none
has). One pipelined round trip per sample: LLEN and LINDEX -1 per list.

Queues: the ones named, plus (with ``discover``) every queue bound in
``_kombu.binding.*``, found with SCAN every ``discover_interval`` seconds (not
at every sample: SCAN walks the whole keyspace), leaving out Celery's own
broadcast and event queues.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from . import _redis
from ._base import QueueSample, age
from ._redact import Scrubber, redact_url

HEADER = "jobpulse_enqueued_at"
DEFAULT_SEP = "\x06\x16"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
BINDING_KEY = "_kombu.binding."
#: exchanges Celery uses for broadcasts, replies and events: no task queues behind them
INTERNAL_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})


def internal_queue(name: str) -> bool:
    return not name or name.endswith(".pidbox") or name.startswith("celeryev.")


def enqueued_at(raw: bytes | str | None) -> float | None:
    """``jobpulse_enqueued_at`` from one kombu envelope, or None."""
    if raw is None:
        return None
    try:
        envelope = json.loads(raw)
        value = envelope["headers"][HEADER]
        ts = float(value)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return ts if math.isfinite(ts) else None


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class CeleryRedisSource:
    """Samples Celery queues on one Redis broker."""

    system = "celery"

    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[str] = (),
        discover: bool = True,
        priority_steps: Sequence[int] = DEFAULT_PRIORITY_STEPS,
        sep: str = DEFAULT_SEP,
        key_prefix: str = "",
        timeout: float = 5.0,
        discover_interval: float = 60.0,
    ) -> None:
        self.url = url
        self.broker = redact_url(url)
        self.queues = tuple(dict.fromkeys(queues))
        self.discover = discover
        self.priority_steps = tuple(sorted(set(priority_steps))) or (0,)
        self.sep = sep
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.discover_interval = discover_interval
        self._scrub = Scrubber([url])
        self._client: Any = _redis.connect(url, timeout)  # no I/O yet: checks the URL
        self._discovered: tuple[str, ...] = ()
        self._discovered_at: float | None = None

    def __repr__(self) -> str:
        return f"CeleryRedisSource({self.broker!r})"

    def scrub(self, text: object) -> str:
        """``text`` without this source's URL and credentials."""
        return self._scrub(text)

    def keys_of(self, queue: str) -> list[str]:
        """The Redis lists holding ``queue``'s messages, one per priority step."""
        return [
            self.key_prefix + (f"{queue}{self.sep}{step}" if step else queue)
            for step in self.priority_steps
        ]

    def _discover(self, client: Any) -> tuple[str, ...]:
        now = time.monotonic()
        if self._discovered_at is not None and now - self._discovered_at < self.discover_interval:
            return self._discovered
        binding = self.key_prefix + BINDING_KEY
        keys = [
            _redis.text(k) for k in client.scan_iter(match=_glob_escape(binding) + "*", count=1000)
        ]
        keys = [k for k in keys if k[len(binding) :] not in INTERNAL_EXCHANGES]
        names: set[str] = set()
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(key)
            for members in pipe.execute(raise_on_error=False):
                if isinstance(members, Exception):
                    continue
                for member in members:
                    queue = _redis.text(member).split(self.sep)[-1]
                    if not internal_queue(queue):
                        names.add(queue)
        self._discovered = tuple(sorted(names))
        self._discovered_at = now
        return self._discovered

    def sample(self, now: float) -> list[QueueSample]:
        client = self._client
        with _redis.unavailable_on_error(self._scrub):
            discovered = self._discover(client) if self.discover else ()
            names = list(dict.fromkeys((*self.queues, *discovered)))
            if not names:
                return []
            pipe = client.pipeline(transaction=False)
            for name in names:
                for key in self.keys_of(name):
                    pipe.llen(key)
                    pipe.lindex(key, -1)
            replies = pipe.execute(raise_on_error=False)
        samples = []
        per_queue = 2 * len(self.priority_steps)
        for i, name in enumerate(names):
            chunk = replies[i * per_queue : (i + 1) * per_queue]
            if any(isinstance(r, Exception) for r in chunk[0::2]):
                continue  # a key of another type: not a kombu queue, no sample
            depth = sum(int(n) for n in chunk[0::2])
            ages = [
                a
                for length, tail in zip(chunk[0::2], chunk[1::2], strict=True)
                if length and not isinstance(tail, Exception)
                and (a := age(now, enqueued_at(tail))) is not None
            ]  # fmt: skip
            oldest = 0.0 if depth == 0 else (max(ages) if ages else None)
            samples.append(QueueSample(name, depth, oldest))
        return samples

    def close(self) -> None:
        """Drop the connections; the next sample connects again."""
        _redis.close(self._client)
        self._discovered_at = None
