"""A Redis client for sampling: short timeouts, no hidden retries, errors made plain.

redis-py reconnects by itself on the next command after a connection failure,
so a source only needs to turn failures into :class:`BrokerUnavailable` and
call again at the next interval.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._base import BrokerUnavailable
from ._redact import Scrubber


def connect(url: str, timeout: float) -> Any:
    """A ``redis.Redis`` for ``url`` (redis://, rediss://, unix://) that fails fast."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        decode_responses=False,
    )


@contextmanager
def unavailable_on_error(scrub: Scrubber) -> Iterator[None]:
    """Connection-level Redis failures (refused, reset, timeout, auth) become
    :class:`BrokerUnavailable` with a message free of credentials."""
    import redis

    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {scrub(exc)}") from None


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def close(client: Any) -> None:
    if client is None:
        return
    try:
        client.connection_pool.disconnect()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
        pass
