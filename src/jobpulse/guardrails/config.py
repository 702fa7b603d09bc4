"""Guardrails settings: classification rules, enforcement, and where state lives.

Given to ``jobpulse.instrument(guardrails=...)`` as a :class:`Guardrails`, a
mapping of its fields, or (environment) ``JOBPULSE_GUARDRAILS`` as a JSON
object. ``JOBPULSE_REDIS_URL`` is the Redis used when ``redis`` is not given.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classify import Failure, Verdict

#: An error type named by class, or by name: ``"myapp.errors.BadInput"`` (qualified,
#: matched against the exception's class and its bases) or ``"BadInput"`` (bare name).
ErrorType = type[BaseException] | str
#: ``predicate(failure) -> Verdict | "poison" | "transient" | "unknown" | None``;
#: None means "no opinion", the next rule decides.
Predicate = Callable[["Failure"], "Verdict | str | None"]

REDIS_URL_ENV = "JOBPULSE_REDIS_URL"
GUARDRAILS_ENV = "JOBPULSE_GUARDRAILS"


@dataclass(frozen=True)
class Rules:
    """How failures of a job are classified (see docs/guardrails.md for the order).

    non_retryable: error types that are poison on the first failure.
    transient: error types worth retrying; never poison, however often they repeat.
    predicates: called in order; the first that returns a verdict decides.
    repeats: consecutive failed attempts of one job id with the same error type and
        fingerprint that make it poison (default 2; ``None`` inherits the global rules).
    defaults: apply jobpulse's built-in lists (connection errors and timeouts are
        transient; validation, decoding, permission and auth errors are non-retryable).
    """

    non_retryable: tuple[ErrorType, ...] = ()
    transient: tuple[ErrorType, ...] = ()
    predicates: tuple[Predicate, ...] = ()
    repeats: int | None = None
    defaults: bool = True

    def __post_init__(self) -> None:
        for name in ("non_retryable", "transient", "predicates"):
            value = getattr(self, name)
            if isinstance(value, (str, type)) or callable(value):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        for t in (*self.non_retryable, *self.transient):
            if not (isinstance(t, str) and t) and not (
                isinstance(t, type) and issubclass(t, BaseException)
            ):
                raise ValueError(
                    f"Rules: {t!r} is not an error type; valid values: exception classes or "
                    "their names ('myapp.errors.BadInput' or 'BadInput')"
                )
        for p in self.predicates:
            if not callable(p):
                raise ValueError(f"Rules.predicates: {p!r} is not callable")
        if self.repeats is not None and (
            isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 2
        ):
            raise ValueError(
                f"Rules.repeats must be a whole number >= 2 or None, got {self.repeats!r}"
            )


@dataclass(frozen=True)
class Guardrails:
    """Poison classification, quarantine and ``once``.

    enforce: None follows the run's enforcement (``instrument(enforce=...)`` or
        ``@jobpulse.job(enforce=...)``); True sets poison runs aside in the quarantine
        store (and adapters stop retrying them); False only observes (the run's
        ``jobpulse.action`` says ``quarantine``, nothing else changes).
    rules: the process-wide classification rules.
    jobs: job name or fnmatch pattern -> :class:`Rules` consulted before ``rules``.
    redis: a Redis URL or a ``redis.Redis`` client for attempt memory, the quarantine
        store and ``once`` (default: ``JOBPULSE_REDIS_URL``; none: in-process memory).
    classify: False turns classification off entirely.
    memory_size: job ids remembered in process (LRU) when there is no Redis.
    memory_ttl: seconds a job id's attempt history is kept in Redis.
    store: an explicit quarantine store (tests, custom back ends).
    max_attempts: enforce mode's bound on the attempts of a job that neither jobpulse's
        budgets nor the framework bound (a Celery task with ``max_retries=None``): retries
        are never infinite when enforcement is on.
    """

    enforce: bool | None = None
    rules: Rules = field(default_factory=Rules)
    jobs: Mapping[str, Rules] = field(default_factory=dict)
    redis: Any = None
    classify: bool = True
    memory_size: int = 10_000
    memory_ttl: float = 7 * 86400.0
    store: Any = None
    max_attempts: int = 25

    def __post_init__(self) -> None:
        value = self.max_attempts
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"Guardrails.max_attempts must be a whole number >= 1 (attempts, the first "
                f"included), got {value!r}"
            )

    def rules_for(self, job_name: str) -> list[Rules]:
        """The job's own rules (exact name, then the first matching pattern), then global."""
        out: list[Rules] = []
        exact = self.jobs.get(job_name)
        if exact is not None:
            out.append(exact)
        else:
            for pattern, rules in self.jobs.items():
                if fnmatchcase(job_name, pattern):
                    out.append(rules)
                    break
        out.append(self.rules)
        return out

    def repeats_for(self, job_name: str) -> int:
        for rules in self.rules_for(job_name):
            if rules.repeats is not None:
                return rules.repeats
        return 2

    def redis_url(self) -> str | None:
        if isinstance(self.redis, str):
            return self.redis or None
        if self.redis is None:
            return os.environ.get(REDIS_URL_ENV) or None
        return None


def parse(setting: str, raw: Any, from_env: bool) -> Guardrails:
    """Parser for the ``guardrails`` setting (used by :mod:`jobpulse._config`)."""
    from .._config import ConfigurationError

    where = f"{GUARDRAILS_ENV} (environment)" if from_env else f"instrument({setting}=...)"
    if raw is None:
        return Guardrails()
    if isinstance(raw, Guardrails):
        return raw
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{where}: not valid JSON ({exc}); valid values: a JSON object such as "
                '{"enforce": true, "redis": "redis://localhost:6379/0", '
                '"non_retryable": ["myapp.errors.BadInput"]}'
            ) from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{where}: {raw!r} is not valid; valid values: a jobpulse.guardrails.Guardrails, "
            "a mapping of its fields, or None"
        )
    raw = dict(raw)
    rule_keys = {"non_retryable", "transient", "predicates", "repeats", "defaults"}
    rule_kw = {k: raw.pop(k) for k in list(raw) if k in rule_keys}
    valid = {f.name for f in fields(Guardrails)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {unknown}; valid keys: {sorted(valid | rule_keys)}"
        )
    try:
        if rule_kw:
            if "rules" in raw:
                raise ValueError("give either 'rules' or its fields, not both")
            raw["rules"] = Rules(**rule_kw)
        if isinstance(raw.get("jobs"), Mapping):
            raw["jobs"] = {
                k: v if isinstance(v, Rules) else Rules(**v) for k, v in raw["jobs"].items()
            }
        if raw.get("enforce") is not None and not isinstance(raw["enforce"], bool):
            raise ValueError(f"enforce must be true, false or null, got {raw['enforce']!r}")
        return Guardrails(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


# -- the active configuration ------------------------------------------------
_DEFAULT = Guardrails()


def active() -> Guardrails:
    """The configuration of the instrumented runtime, or the defaults."""
    from .. import _runtime

    rt = _runtime.get()
    if rt is None:
        return _DEFAULT
    cfg = getattr(rt.settings, "guardrails", None)
    return cfg if isinstance(cfg, Guardrails) else _DEFAULT


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def redis_client(cfg: Guardrails | None = None) -> Any:
    """The Redis client guardrails use, or None (in-process memory only).

    Clients made from a URL get socket timeouts: jobpulse never waits forever itself.
    """
    cfg = active() if cfg is None else cfg
    if cfg.redis is not None and not isinstance(cfg.redis, str):
        return cfg.redis
    url = cfg.redis_url()
    if not url:
        return None
    return client_for_url(url)


def client_for_url(url: str) -> Any:
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
            )
            _clients[url] = client
        return client
