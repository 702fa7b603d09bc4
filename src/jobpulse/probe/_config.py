"""Which brokers and queues to sample: from arguments, else the usual environment.

Brokers:

* ``redis_url``: RQ and Celery queues on this Redis; ``amqp_url``: Celery
  queues on this RabbitMQ. When either is given the environment is not read.
* Otherwise: RQ on ``RQ_REDIS_URL`` (else ``REDIS_URL``); Celery on
  ``CELERY_BROKER_URL`` (else ``REDIS_URL``), Redis or RabbitMQ by its scheme.

Queues: ``queues`` for every system, ``rq_queues``/``celery_queues`` for one;
plus, with ``discover``, RQ's registry of queues and kombu's bindings on
Redis. RabbitMQ queues are never discovered; with none named, ``celery``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import ConfigurationError
from ._base import Source
from ._redact import redact_url
from .celery_rabbitmq import DEFAULT_QUEUES, CeleryRabbitMQSource
from .celery_redis import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP, CeleryRedisSource
from .rq_redis import DEFAULT_PREFIX, RQRedisSource

SYSTEMS = ("rq", "celery")
REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
#: environment variables read when no URL is given, most specific first
RQ_ENV = ("RQ_REDIS_URL", "REDIS_URL")
CELERY_ENV = ("CELERY_BROKER_URL", "REDIS_URL")


def _names(raw: Iterable[str] | str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else list(raw)
    out: dict[str, None] = {}
    for item in items:
        for name in str(item).split(","):
            if name.strip():
                out[name.strip()] = None
    return tuple(out)


@dataclass(frozen=True)
class ProbeConfig:
    """Everything ``jobpulse probe`` and :func:`jobpulse.probe.start_sampler` accept."""

    redis_url: str | None = None
    amqp_url: str | None = None
    systems: tuple[str, ...] = SYSTEMS
    queues: tuple[str, ...] = ()
    rq_queues: tuple[str, ...] = ()
    celery_queues: tuple[str, ...] = ()
    discover: bool = True
    interval: float = 15.0
    timeout: float = 5.0
    rq_key_prefix: str | None = None  # None: RQ_KEY_PREFIX, else "rq"
    celery_priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    celery_sep: str = DEFAULT_SEP
    celery_key_prefix: str = ""
    discover_interval: float = 60.0
    management: bool = True
    management_url: str | None = None  # None: RABBITMQ_MANAGEMENT_URL, else next to the broker
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_options(cls, **options: Any) -> ProbeConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"probe: unknown option(s) {unknown}; valid options: {sorted(known)}"
            )
        for name in ("queues", "rq_queues", "celery_queues"):
            if name in options:
                options[name] = _names(options[name])
        if "systems" in options:
            options["systems"] = _names(options["systems"]) or SYSTEMS
        if "celery_priority_steps" in options:
            options["celery_priority_steps"] = tuple(
                int(s) for s in options["celery_priority_steps"]
            )
        config = cls(**options)
        config.validate()
        return config

    def validate(self) -> None:
        bad = [s for s in self.systems if s not in SYSTEMS]
        if bad:
            raise ConfigurationError(f"probe: unknown system(s) {bad}; valid values: {SYSTEMS}")
        for name in ("interval", "timeout", "discover_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigurationError(
                    f"probe: {name}={value!r} is not valid; valid values: seconds > 0"
                )


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _kind(url: str, where: str) -> str:
    scheme = scheme_of(url.split(";", 1)[0])
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    raise ConfigurationError(
        f"probe: {where}={redact_url(url)!r}: the scheme {scheme!r} is not supported; valid "
        f"values: {', '.join(s + '://' for s in REDIS_SCHEMES + AMQP_SCHEMES)}"
    )


def brokers(config: ProbeConfig) -> list[tuple[str, str, str, str]]:
    """``(system, kind, url, where)`` for every broker to sample; ``where`` names the flag
    or variable the URL came from."""
    env = os.environ if config.environ is None else config.environ
    found: list[tuple[str, str, str, str]] = []
    if config.redis_url or config.amqp_url:
        if config.redis_url:
            kind = _kind(config.redis_url, "redis_url")
            if kind != "redis":
                raise ConfigurationError(
                    f"probe: redis_url={redact_url(config.redis_url)!r} is not a Redis URL; "
                    "valid values: redis://, rediss://, unix:// (RabbitMQ goes in amqp_url)"
                )
            found += [(s, "redis", config.redis_url, "redis_url") for s in SYSTEMS]
        if config.amqp_url:
            if _kind(config.amqp_url, "amqp_url") != "amqp":
                raise ConfigurationError(
                    f"probe: amqp_url={redact_url(config.amqp_url)!r} is not an AMQP URL; "
                    "valid values: amqp://, amqps://, pyamqp://"
                )
            found.append(("celery", "amqp", config.amqp_url, "amqp_url"))
    else:
        for system, names in (("rq", RQ_ENV), ("celery", CELERY_ENV)):
            for var in names:
                url = env.get(var, "").strip()
                if url:
                    kind = _kind(url, var)
                    if system == "rq" and kind != "redis":
                        continue  # RQ runs on Redis only
                    found.append((system, kind, url, var))
                    break
    return [b for b in found if b[0] in config.systems]


def build_sources(config: ProbeConfig) -> list[Source]:
    """The sources for ``config`` (no broker I/O happens here)."""
    env = os.environ if config.environ is None else config.environ
    sources: list[Source] = []
    for system, kind, url, _where in brokers(config):
        if system == "rq":
            sources.append(
                RQRedisSource(
                    url,
                    queues=config.queues + config.rq_queues,
                    discover=config.discover,
                    key_prefix=config.rq_key_prefix or env.get("RQ_KEY_PREFIX") or DEFAULT_PREFIX,
                    timeout=config.timeout,
                )
            )
        elif kind == "redis":
            sources.append(
                CeleryRedisSource(
                    url,
                    queues=config.queues + config.celery_queues,
                    discover=config.discover,
                    priority_steps=config.celery_priority_steps,
                    sep=config.celery_sep,
                    key_prefix=config.celery_key_prefix,
                    timeout=config.timeout,
                    discover_interval=config.discover_interval,
                )
            )
        else:
            sources.append(
                CeleryRabbitMQSource(
                    url,
                    queues=(config.queues + config.celery_queues) or DEFAULT_QUEUES,
                    management=config.management,
                    management_url=config.management_url
                    or env.get("RABBITMQ_MANAGEMENT_URL")
                    or None,
                    timeout=config.timeout,
                )
            )
    return sources
