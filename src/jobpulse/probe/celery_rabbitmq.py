"""Celery queues on RabbitMQ.

Depth: a passive ``queue.declare`` per queue (one round trip; RabbitMQ answers
with the number of ready messages, not those delivered and awaiting an ack).
A queue that does not exist closes the channel with 404: no sample for it, a
log line once, and a new channel.

Oldest age: AMQP cannot read a message without taking it (``basic.get`` and a
requeue would set ``redelivered`` on it), so the age comes from the management
API's ``head_message_timestamp`` (see :mod:`._management`) when the plugin is
on: the AMQP ``timestamp`` property of the head message. That needs producers
that set the property; messages without it give depth only. Without the
management API the probe samples depth only and says so once at start.

Queue discovery is not attempted: a RabbitMQ virtual host usually carries
queues that are not Celery's, and labelling them ``jobpulse.system=celery``
would be wrong. Name the queues (default: Celery's default queue, ``celery``).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from ._base import BrokerUnavailable, OnceLog, QueueSample, age, log
from ._management import DEFAULT_PORT, DEFAULT_TLS_PORT, ManagementAPI, ManagementUnavailable
from ._redact import Scrubber, redact_url, split_url

DEFAULT_QUEUES = ("celery",)


def _connection(url: str, timeout: float) -> Any:
    kombu: Any = importlib.import_module("kombu")
    return kombu.Connection(
        url,
        connect_timeout=timeout,
        heartbeat=0,  # the connection idles between samples; no heartbeats to miss
        transport_options={"read_timeout": timeout, "write_timeout": timeout},
    )


def management_for(amqp_url: str, management_url: str | None, timeout: float) -> ManagementAPI:
    """The management API next to an AMQP broker: ``management_url`` when given (its
    credentials, or the AMQP URL's), else ``http://{amqp host}:15672`` (``https`` and
    15671 for ``amqps``)."""
    conn = _connection(amqp_url, timeout)
    user = conn.userid or "guest"
    password = conn.password if isinstance(conn.password, str) else "guest"
    if management_url:
        _scheme, userinfo, hostpath, _query = split_url(management_url)
        if userinfo:
            u, _, p = userinfo.partition(":")
            user, password = unquote(u), unquote(p)
        base = management_url.split("://", 1)[0] + "://" + hostpath
    else:
        tls = bool(conn.ssl) or amqp_url.startswith("amqps")
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
        base = f"{'https' if tls else 'http'}://{conn.hostname or '127.0.0.1'}:{port}"
    return ManagementAPI(base, user, password, timeout)


class CeleryRabbitMQSource:
    """Samples named Celery queues on one RabbitMQ virtual host."""

    system = "celery"

    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[str] = DEFAULT_QUEUES,
        management: bool = True,
        management_url: str | None = None,
        timeout: float = 5.0,
        management_recheck: float = 60.0,
    ) -> None:
        self.url = url
        self.broker = redact_url(url)
        self.queues = tuple(dict.fromkeys(queues)) or DEFAULT_QUEUES
        self.timeout = timeout
        self._scrub = Scrubber([url, management_url])
        probe = _connection(url, timeout)  # no I/O yet: checks the URL
        self.vhost = probe.virtual_host or "/"
        self._scrub.add_secret(probe.password if isinstance(probe.password, str) else None)
        self.management = management_for(url, management_url, timeout) if management else None
        self.management_recheck = management_recheck
        self._mgmt_ok = False
        self._mgmt_checked_at: float | None = None
        self._conn: Any = None
        self._chan: Any = None
        self._once = OnceLog()

    def __repr__(self) -> str:
        return f"CeleryRabbitMQSource({self.broker!r})"

    def scrub(self, text: object) -> str:
        """``text`` without this source's URLs and credentials."""
        return self._scrub(text)

    # -- connection ---------------------------------------------------------
    def _channel(self) -> Any:
        if self._chan is not None:
            return self._chan
        if self._conn is None:
            self._conn = _connection(self.url, self.timeout)
        self._conn.connect()
        self._chan = self._conn.channel()
        return self._chan

    def close(self) -> None:
        """Drop the connection without a closing handshake (the broker may be gone)."""
        conn, self._conn, self._chan = self._conn, None, None
        if conn is not None:
            try:
                conn.collect()
            except Exception:  # noqa: BLE001 - the socket may already be dead
                pass

    # -- management API -------------------------------------------------------
    def _check_management(self) -> None:
        mgmt = self.management
        now = time.monotonic()
        last = self._mgmt_checked_at
        if self._mgmt_ok or (last is not None and now - last < self.management_recheck):
            return
        first = last is None
        self._mgmt_checked_at = now
        if mgmt is None:
            if first:
                log.warning(
                    "jobpulse probe: celery queues on %s: depth only (management API off), "
                    "no oldest-message age",
                    self.broker,
                )
            return
        try:
            mgmt.check()
        except ManagementUnavailable as exc:
            self._once(
                "management",
                logging.WARNING,
                "jobpulse probe: celery queues on %s: depth only, no oldest-message age: the "
                "RabbitMQ management API at %s does not answer (%s); enable it with "
                "`rabbitmq-plugins enable rabbitmq_management` (checked again every %.0f s)",
                self.broker, mgmt.url, exc, self.management_recheck,
            )  # fmt: skip
            return
        self._mgmt_ok = True
        if self._once.reset("management") or first:
            log.info(
                "jobpulse probe: celery queues on %s: oldest-message age from the management "
                "API at %s (head message timestamp)",
                self.broker,
                mgmt.url,
            )

    def _head_age(self, queue: str, now: float) -> float | None:
        if not self._mgmt_ok or self.management is None:
            return None
        try:
            ts = self.management.head_timestamp(self.vhost, queue)
        except ManagementUnavailable as exc:
            self._mgmt_ok = False
            self._once(
                "management",
                logging.WARNING,
                "jobpulse probe: the RabbitMQ management API at %s stopped answering (%s); "
                "depth only until it answers again",
                self.management.url, exc,
            )  # fmt: skip
            return None
        if ts is None:
            self._once(
                f"no-ts:{queue}",
                logging.INFO,
                "jobpulse probe: celery queue %r on %s: the head message has no AMQP timestamp "
                "property, so its age is unknown (depth only while that lasts)",
                queue, self.broker,
            )  # fmt: skip
        else:
            self._once.reset(f"no-ts:{queue}")
        return age(now, ts)

    # -- sampling -------------------------------------------------------------
    def _declare(self, queue: str) -> int | None:
        """Ready messages in ``queue``, or None when it does not exist or cannot be read."""
        chan = self._channel()
        conn_errors: tuple[type[BaseException], ...] = tuple(self._conn.connection_errors)
        chan_errors: tuple[type[BaseException], ...] = tuple(self._conn.channel_errors)
        try:
            _name, count, _consumers = chan.queue_declare(queue=queue, passive=True)
        except conn_errors as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {self._scrub(exc)}") from None
        except chan_errors as exc:
            self._chan = None  # the broker closed the channel (404, 403, ...)
            if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
                self._once(
                    f"missing:{queue}",
                    logging.WARNING,
                    "jobpulse probe: celery queue %r does not exist on %s; no sample for it "
                    "until it does",
                    queue, self.broker,
                )  # fmt: skip
            else:
                self._once(
                    f"missing:{queue}",
                    logging.WARNING,
                    "jobpulse probe: cannot read celery queue %r on %s (%s: %s); no sample for "
                    "it until it can be read",
                    queue, self.broker, type(exc).__name__, self._scrub(exc),
                )  # fmt: skip
            return None
        self._once.reset(f"missing:{queue}")
        return int(count)

    def sample(self, now: float) -> list[QueueSample]:
        if self._conn is None:
            self._conn = _connection(self.url, self.timeout)
        # a refused login arrives as a channel-level error (403) while connecting
        errors: tuple[type[BaseException], ...] = (
            OSError,
            *self._conn.connection_errors,
            *self._conn.channel_errors,
        )
        try:
            self._channel()
        except errors as exc:
            self.close()
            raise BrokerUnavailable(f"{type(exc).__name__}: {self._scrub(exc)}") from None
        self._check_management()
        samples = []
        try:
            for queue in self.queues:
                depth = self._declare(queue)
                if depth is None:
                    continue
                oldest = 0.0 if depth == 0 else self._head_age(queue, now)
                samples.append(QueueSample(queue, depth, oldest))
        except BrokerUnavailable:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise BrokerUnavailable(f"{type(exc).__name__}: {self._scrub(exc)}") from None
        return samples
