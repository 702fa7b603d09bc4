"""Queue health: ``jobpulse.queue.depth`` and ``jobpulse.queue.oldest.age`` per queue.

The ``jobpulse probe`` command runs this as a sidecar. One worker may run it
in-process instead (one sampler per queue, not one per worker process)::

    import jobpulse, jobpulse.probe

    jobpulse.instrument()
    sampler = jobpulse.probe.start_sampler(redis_url="redis://redis:6379/0", interval=15)
    ...
    sampler.stop()

Sources: RQ queues on Redis, Celery queues on Redis, Celery queues on
RabbitMQ (see their modules). Every sample costs O(1) broker round trips per
queue whatever its depth. Broker URLs never appear in output, logs or
telemetry with their credentials (:func:`redact_url`). See ``docs/probe.md``.
"""

from __future__ import annotations

from typing import Any

from ._base import BrokerUnavailable, QueueSample, Source
from ._config import ProbeConfig, build_sources
from ._redact import Scrubber, redact_url
from ._sampler import Sampler

__all__ = [
    "BrokerUnavailable",
    "ProbeConfig",
    "QueueSample",
    "Sampler",
    "Scrubber",
    "Source",
    "build_sources",
    "redact_url",
    "start_sampler",
]


def start_sampler(**options: Any) -> Sampler:
    """Start sampling on a daemon thread; returns the handle (``stop()`` ends it).

    Options are :class:`ProbeConfig`'s: ``redis_url``, ``amqp_url`` (else the
    environment: ``RQ_REDIS_URL``, ``REDIS_URL``, ``CELERY_BROKER_URL``),
    ``systems``, ``queues``, ``rq_queues``, ``celery_queues``, ``discover``,
    ``interval``, ``timeout``, ``rq_key_prefix``, ``celery_priority_steps``,
    ``celery_sep``, ``celery_key_prefix``, ``management``, ``management_url``.
    The values reach the exporters through ``jobpulse.instrument()``, which the
    process runs as usual. A bad option raises ``ConfigurationError``.
    """
    config = ProbeConfig.from_options(**options)
    sources = build_sources(config)
    if not sources:
        from .._config import ConfigurationError

        raise ConfigurationError(
            "probe: no broker to sample; valid values: redis_url=..., amqp_url=..., or the "
            "environment variables RQ_REDIS_URL, REDIS_URL, CELERY_BROKER_URL"
        )
    return Sampler(sources, interval=config.interval).start()
