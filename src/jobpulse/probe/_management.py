"""The RabbitMQ management API, for the one thing AMQP cannot tell without consuming:
the head message's timestamp.

``GET /api/queues/{vhost}/{name}?columns=head_message_timestamp`` returns the
AMQP ``timestamp`` property (unix seconds) of the message at the head of a
classic queue, read from the broker's queue statistics: nothing is consumed
or requeued, so message order and the ``redelivered`` flag stay as they were.
The statistics are refreshed every ``collect_statistics_interval`` (5 s by
default), so the value may be that many seconds old; it is null when the head
message has no timestamp property and absent for queue types that do not
report it (quorum queues, streams). Needs ``rabbitmq-plugins enable
rabbitmq_management``.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from ._redact import Scrubber, redact_url

DEFAULT_PORT = 15672
DEFAULT_TLS_PORT = 15671


class ManagementUnavailable(Exception):
    """The API did not answer usefully; the message is free of credentials."""


class ManagementAPI:
    def __init__(self, base_url: str, user: str, password: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = redact_url(self.base_url)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self.timeout = timeout
        self._scrub = Scrubber([base_url])
        self._scrub.add_secret(password)

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self.base_url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ManagementUnavailable(f"HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad JSON
            reason = getattr(exc, "reason", exc)
            raise ManagementUnavailable(f"{type(exc).__name__}: {self._scrub(reason)}") from None

    def check(self) -> None:
        """Raise :class:`ManagementUnavailable` unless the API answers."""
        if self._get("/api/overview?columns=rabbitmq_version") is None:
            raise ManagementUnavailable("HTTP 404 Not Found (no management API here)")

    def head_timestamp(self, vhost: str, queue: str) -> float | None:
        """The head message's ``timestamp`` property, or None when the queue has no
        head, its head has no timestamp, or the broker does not report it."""
        data = self._get(
            f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
            "?columns=name,head_message_timestamp"
        )
        if not isinstance(data, dict):
            return None
        ts = data.get("head_message_timestamp")
        return float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None
