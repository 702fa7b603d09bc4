"""Settings: one frozen object, one table of sources.

Precedence for every setting is: keyword argument to ``instrument()`` >
``JOBPULSE_*`` environment variable > default. A bad value fails here, at
``instrument()``, with a message naming the setting and what would have been
valid, because a typo found at 3 a.m. in a worker log is a typo found too late.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ._run import Budget

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
ADAPTER_NAMES = ("celery", "rq", "asyncio")


class ConfigurationError(ValueError):
    """A setting given to ``instrument()`` (or its environment variable) is invalid."""


def env_name(setting: str) -> str:
    return "JOBPULSE_" + setting.upper()


def _where(setting: str, from_env: bool) -> str:
    return f"{env_name(setting)} (environment)" if from_env else f"instrument({setting}=...)"


def _bool(setting: str, raw: Any, from_env: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigurationError(
        f"{_where(setting, from_env)}: {raw!r} is not a boolean; "
        f"valid values: True/False, or one of {sorted(_TRUE | _FALSE)}"
    )


def _optional_bool(setting: str, raw: Any, from_env: bool) -> bool | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "auto"}):
        return None
    try:
        return _bool(setting, raw, from_env)
    except ConfigurationError:
        raise ConfigurationError(
            f"{_where(setting, from_env)}: {raw!r} is not valid; "
            "valid values: None/'auto' (set up the SDK only when none is set), True, False"
        ) from None


def _positive(setting: str, raw: Any, from_env: bool, *, allow_none: bool = False) -> Any:
    if raw is None and allow_none:
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(
            f"{_where(setting, from_env)}: {raw!r} is not valid; "
            "valid values: a positive number of seconds"
        )
    return value


def _port(setting: str, raw: Any, from_env: bool) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigurationError(
            f"{_where(setting, from_env)}: {raw!r} is not valid; "
            "valid values: a TCP port from 0 to 65535, or None"
        )
    return value


def _budget(setting: str, raw: Any, from_env: bool) -> Budget | None:
    if raw is None or isinstance(raw, Budget):
        return raw
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{_where(setting, from_env)}: not valid JSON ({exc}); valid values: "
                'a JSON object such as {"max_runtime": 300, "heartbeat_timeout": 60}'
            ) from None
    if isinstance(raw, Mapping):
        try:
            return Budget(**raw)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{_where(setting, from_env)}: {exc}; valid keys: "
                "max_runtime, heartbeat_timeout, queue_wait, max_attempts (positive numbers)"
            ) from None
    raise ConfigurationError(
        f"{_where(setting, from_env)}: {raw!r} is not valid; valid values: a jobpulse.Budget, "
        "a mapping of its fields, or None"
    )


def _budgets(setting: str, raw: Any, from_env: bool) -> dict[str, Budget]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{_where(setting, from_env)}: not valid JSON ({exc}); valid values: a JSON "
                'object of job name or pattern to budget, e.g. {"tasks.*": {"max_runtime": 60}}'
            ) from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{_where(setting, from_env)}: {raw!r} is not valid; valid values: a mapping of "
            "job name or fnmatch pattern to jobpulse.Budget"
        )
    out: dict[str, Budget] = {}
    for pattern, value in raw.items():
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError(
                f"{_where(setting, from_env)}: key {pattern!r} is not valid; "
                "valid keys: non-empty job names or fnmatch patterns"
            )
        budget = _budget(f"{setting}[{pattern!r}]", value, from_env)
        if budget is not None:
            out[pattern] = budget
    return out


def _patterns(setting: str, raw: Any, from_env: bool) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, (list, tuple, set, frozenset)) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    raise ConfigurationError(
        f"{_where(setting, from_env)}: {raw!r} is not valid; valid values: a list of "
        "fnmatch patterns (or, in the environment, a comma-separated string)"
    )


def _adapters(setting: str, raw: Any, from_env: bool) -> tuple[str, ...] | None:
    if raw is None or raw == "auto":
        return None
    names = _patterns(setting, raw, from_env)
    if names == ("none",):
        return ()
    bad = [n for n in names if n not in ADAPTER_NAMES]
    if bad:
        raise ConfigurationError(
            f"{_where(setting, from_env)}: unknown adapter(s) {bad}; valid values: 'auto', "
            f"'none', or a list from {list(ADAPTER_NAMES)}"
        )
    return names


def _log_format(setting: str, raw: Any, from_env: bool) -> str | None:
    if raw is None or raw == "":
        return None
    if raw in ("json", "text"):
        return str(raw)
    raise ConfigurationError(
        f"{_where(setting, from_env)}: {raw!r} is not valid; valid values: None (leave logging "
        "to the application), 'json', 'text'"
    )


def _record_args(setting: str, raw: Any, from_env: bool) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = None
    if isinstance(raw, Mapping) and all(
        isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v)
        for k, v in raw.items()
    ):
        return {k: tuple(v) for k, v in raw.items()}
    raise ConfigurationError(
        f"{_where(setting, from_env)}: not valid; valid values: a mapping of job name or "
        "pattern to the list of argument names that may be recorded"
    )


def _passthrough(setting: str, raw: Any, from_env: bool) -> Any:
    return raw


def _guardrails(setting: str, raw: Any, from_env: bool) -> Any:
    from .guardrails.config import parse

    return parse(setting, raw, from_env)


_Parser = Callable[[str, Any, bool], Any]

#: setting -> (parser, default, readable from the environment)
_TABLE: dict[str, tuple[_Parser, Any, bool]] = {
    "enforce": (_bool, False, True),
    "budgets": (_budgets, None, True),
    "default_budget": (_budget, None, True),
    "asyncio_jobs": (_patterns, None, True),
    "heartbeat_interval": (_positive, 10.0, True),
    "watchdog_interval": (_positive, 1.0, True),
    "cancel_grace": (_positive, 30.0, True),
    "flush_timeout": (_positive, 3.0, True),
    "configure_otel": (_optional_bool, None, True),
    "continue_trace": (_bool, False, True),
    "adapters": (_adapters, None, True),
    "log_format": (_log_format, None, True),
    "record_args": (_record_args, None, True),
    "prometheus_port": (_port, None, True),
    "prometheus_host": (_passthrough, "0.0.0.0", True),
    "guardrails": (_guardrails, None, True),
    "detect_dependencies": (_bool, True, True),
    "fast_export": (_bool, True, True),
    "tracer_provider": (_passthrough, None, False),
    "meter_provider": (_passthrough, None, False),
    "logger_provider": (_passthrough, None, False),
}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one ``instrument()`` call."""

    enforce: bool = False
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    default_budget: Budget | None = None
    asyncio_jobs: tuple[str, ...] = ()
    heartbeat_interval: float = 10.0
    watchdog_interval: float = 1.0
    cancel_grace: float = 30.0
    flush_timeout: float = 3.0
    configure_otel: bool | None = None
    continue_trace: bool = False
    adapters: tuple[str, ...] | None = None
    log_format: str | None = None
    record_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prometheus_port: int | None = None
    prometheus_host: str = "0.0.0.0"
    guardrails: Any = None  # jobpulse.guardrails.Guardrails
    detect_dependencies: bool = True
    #: the OTLP encoding shortcuts of _encoding/_wire (same bytes; off: the SDK's own)
    fast_export: bool = True
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None

    def budget_for(self, job_name: str) -> Budget | None:
        """The ``budgets`` entry for a job: an exact name beats the first matching pattern."""
        exact = self.budgets.get(job_name)
        if exact is not None:
            return exact
        for pattern, budget in self.budgets.items():
            if fnmatchcase(job_name, pattern):
                return budget
        return None

    def args_allowed(self, job_name: str) -> tuple[str, ...]:
        exact = self.record_args.get(job_name)
        if exact is not None:
            return exact
        for pattern, names in self.record_args.items():
            if fnmatchcase(job_name, pattern):
                return names
        return ()


def load_settings(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve ``instrument(**options)`` against the environment and defaults."""
    environ = os.environ if environ is None else environ
    unknown = sorted(set(options) - set(_TABLE))
    if unknown:
        raise ConfigurationError(
            f"instrument() got unknown setting(s) {unknown}; valid settings: {sorted(_TABLE)}"
        )
    values: dict[str, Any] = {}
    for name, (parse, default, env_ok) in _TABLE.items():
        if name in options and options[name] is not None:
            values[name] = parse(name, options[name], False)
        elif env_ok and environ.get(env_name(name), "") != "":
            values[name] = parse(name, environ[env_name(name)], True)
        else:
            values[name] = parse(name, default, False) if default is not None else _empty(parse)
    return Settings(**values)


def _empty(parse: _Parser) -> Any:
    return parse("", None, False)
