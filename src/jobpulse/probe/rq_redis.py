"""RQ queues on Redis.

RQ keeps the keys of its queues in the set ``{prefix}:queues`` (members are
queue keys, ``{prefix}:queue:{name}``); a queue is a list of job ids, pushed
with RPUSH and popped from the left, so the head (index 0) is the next job and
the oldest one (``at_front`` jobs excepted). The job hash
``{prefix}:job:{id}`` holds ``enqueued_at`` (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC).
The prefix is ``rq`` unless ``RQ_KEY_PREFIX`` says otherwise (RQ 3).

One sample costs three pipelined round trips whatever the number of queues
and their depth: SMEMBERS; LLEN and LRANGE 0..2 per queue; HGET ``enqueued_at``
of the (up to three) head jobs per queue. Three head ids rather than one
because a job whose hash expired (``ttl``) leaves its id in the list until a
worker skips it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from . import _redis
from ._base import QueueSample, age
from ._redact import Scrubber, redact_url

DEFAULT_PREFIX = "rq"
HEAD_IDS = 3


def parse_enqueued_at(raw: bytes | str | None) -> float | None:
    """Unix seconds from RQ's ``enqueued_at`` (``2026-11-29T19:40:00.123456Z``)."""
    value = _redis.text(raw).strip()
    if not value:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.timestamp()


class RQRedisSource:
    """Samples RQ queues: the ones named in ``queues`` and, with ``discover``, every
    queue in RQ's registry of queues."""

    system = "rq"

    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[str] = (),
        discover: bool = True,
        key_prefix: str = DEFAULT_PREFIX,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.broker = redact_url(url)
        self.queues = tuple(dict.fromkeys(queues))
        self.discover = discover
        prefix = self.key_prefix = key_prefix.rstrip(":") or DEFAULT_PREFIX
        self.queues_key = f"{prefix}:queues"
        self.queue_prefix = f"{prefix}:queue:"
        self.job_prefix = f"{prefix}:job:"
        self.timeout = timeout
        self._scrub = Scrubber([url])
        self._client: Any = _redis.connect(url, timeout)  # no I/O yet: checks the URL

    def __repr__(self) -> str:
        return f"RQRedisSource({self.broker!r}, key_prefix={self.key_prefix!r})"

    def scrub(self, text: object) -> str:
        """``text`` without this source's URL and credentials."""
        return self._scrub(text)

    def _names(self, client: Any) -> list[str]:
        names = dict.fromkeys(self.queues)
        if self.discover:
            for member in client.smembers(self.queues_key):
                key = _redis.text(member)
                if key.startswith(self.queue_prefix) and len(key) > len(self.queue_prefix):
                    names[key[len(self.queue_prefix) :]] = None
        return sorted(names)

    def sample(self, now: float) -> list[QueueSample]:
        client = self._client
        with _redis.unavailable_on_error(self._scrub):
            names = self._names(client)
            if not names:
                return []
            pipe = client.pipeline(transaction=False)
            for name in names:
                key = self.queue_prefix + name
                pipe.llen(key)
                pipe.lrange(key, 0, HEAD_IDS - 1)
            replies = pipe.execute(raise_on_error=False)
            depths: dict[str, int] = {}
            heads: dict[str, list[str]] = {}
            for i, name in enumerate(names):
                depth, head = replies[2 * i], replies[2 * i + 1]
                if isinstance(depth, Exception) or isinstance(head, Exception):
                    continue  # not a list (WRONGTYPE): not an RQ queue, no sample
                depths[name] = int(depth)
                heads[name] = [_redis.text(job_id) for job_id in head]
            wanted = [(name, job_id) for name, ids in heads.items() for job_id in ids]
            enqueued: dict[tuple[str, str], Any] = {}
            if wanted:
                pipe = client.pipeline(transaction=False)
                for _name, job_id in wanted:
                    pipe.hget(self.job_prefix + job_id, "enqueued_at")
                enqueued = dict(zip(wanted, pipe.execute(raise_on_error=False), strict=True))
        samples = []
        for name, depth in depths.items():
            oldest: float | None = None
            for job_id in heads[name]:
                raw = enqueued.get((name, job_id))
                if raw is not None and not isinstance(raw, Exception):
                    oldest = parse_enqueued_at(raw)
                    if oldest is not None:
                        break
            samples.append(QueueSample(name, depth, 0.0 if depth == 0 else age(now, oldest)))
        return samples

    def close(self) -> None:
        """Drop the connections; the next sample connects again."""
        _redis.close(self._client)
