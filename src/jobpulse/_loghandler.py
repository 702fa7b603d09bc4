"""jobpulse's log lines into the OpenTelemetry logs pipeline.

Every run writes at least two lines (``run started``, ``run finished``), so this
handler is on every job's path. The SDK's ``LoggingHandler`` is deprecated (in
favour of a handler jobpulse does not require), looks the OTel logger up again
for every record and adds ``code.file.path``/``code.function.name``/
``code.line.number``, which for jobpulse's lines always point into jobpulse
itself: noise an operator pays for in every exported record. This handler
keeps one OTel logger per stdlib logger name and exports the record's own
attributes (the contract's dotted names) and, when there is one, the exception.

It needs the logs API's keyword ``Logger.emit(body=..., attributes=...)``
(opentelemetry-api 1.35+); :func:`make_handler` falls back to the SDK's handler
on older versions.
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback
from typing import Any

from opentelemetry.context import get_current

#: LogRecord attributes that are logging's own, not fields a caller passed in ``extra``
RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_RECORD = logging.LogRecord


def severity_number(levelno: int) -> Any:
    """The OTel severity for a stdlib level (the logs data model's mapping)."""
    from opentelemetry._logs import SeverityNumber

    if levelno <= logging.NOTSET:
        return SeverityNumber.UNSPECIFIED
    for base, first in (
        (logging.CRITICAL, SeverityNumber.FATAL),
        (logging.ERROR, SeverityNumber.ERROR),
        (logging.WARNING, SeverityNumber.WARN),
        (logging.INFO, SeverityNumber.INFO),
        (logging.DEBUG, SeverityNumber.DEBUG),
    ):
        if levelno >= base:
            return SeverityNumber(min(first.value + (levelno - base), first.value + 3))
    return SeverityNumber.TRACE


class OTelLogHandler(logging.Handler):
    """Emits each record to the OTel logger of its stdlib logger's name."""

    def __init__(self, logger_provider: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        # the SDK handler's attribute name: the RQ hand-off finds the pipeline through it
        self._logger_provider = logger_provider
        self._loggers: dict[str, Any] = {}
        self._severity: dict[int, Any] = {}

    def _logger(self, name: str) -> Any:
        found = self._loggers.get(name)
        if found is None:
            found = self._loggers[name] = self._logger_provider.get_logger(name)
        return found

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attrs = {k: v for k, v in record.__dict__.items() if k not in RESERVED}
            if record.exc_info:
                exc_type, exc, tb = record.exc_info
                if exc_type is not None:
                    attrs["exception.type"] = exc_type.__name__
                if exc is not None and exc.args:
                    attrs["exception.message"] = str(exc.args[0])
                if tb is not None:
                    attrs["exception.stacktrace"] = "".join(
                        traceback.format_exception(exc_type, exc, tb)
                    )
            self._send(
                record.name,
                record.levelno,
                record.levelname,
                int(record.created * 1e9),
                get_current(),
                self.format(record) if self.formatter else record.getMessage(),
                attrs,
            )
        except Exception as exc:  # noqa: BLE001 - counted, logged once; raises in tests
            from . import _guard

            _guard.swallow("logs.otel", exc)

    def emit_fields(
        self, name: str, levelno: int, msg: str, attributes: dict[str, Any], context: Any
    ) -> None:
        """The record :meth:`emit` would send for ``logger.log(levelno, msg, extra=attributes)``,
        without building the stdlib ``LogRecord`` first (see :func:`direct_handler`)."""
        try:
            level_name = logging.getLevelName(levelno)
            self._send(name, levelno, level_name, time.time_ns(), context, msg, attributes)
        except Exception as exc:  # noqa: BLE001 - counted, logged once; raises in tests
            from . import _guard

            _guard.swallow("logs.otel", exc)

    def _send(
        self, name: str, levelno: int, level_name: str, timestamp: int, context: Any,
        body: Any, attributes: dict[str, Any],
    ) -> None:  # fmt: skip
        """The one place both paths hand a line to the OTel logger of ``name``."""
        severity = self._severity.get(levelno)
        if severity is None:
            severity = self._severity[levelno] = severity_number(levelno)
        self._logger(name).emit(
            timestamp=timestamp,
            observed_timestamp=time.time_ns(),
            context=context,
            severity_number=severity,
            severity_text=_TEXT.get(level_name, level_name),
            body=body,
            attributes=attributes,
        )

    def flush(self) -> None:
        """Nothing: jobpulse flushes its providers itself, bounded, at exit."""


def direct_handler(logger: logging.Logger, levelno: int) -> OTelLogHandler | None:
    """The OTel handler, when it is the only place a ``levelno`` record of ``logger``
    would reach: then jobpulse's run lines go to it directly, skipping the stdlib
    ``LogRecord`` (a third of a line's cost, and every run writes two lines).

    Anything that could see or change the record takes the stdlib path: another
    handler, propagation to ancestors, a filter or formatter, a level that drops
    it, a custom logger class or record factory (OTel's logging instrumentation
    adds trace ids through one), or an ``emit`` replaced on the handler (the RQ
    hand-off's capture).
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters:
        return None
    if type(logger) is not logging.Logger or logging.getLogRecordFactory() is not _RECORD:
        return None  # a custom logger class or record factory may add to every record
    if not logger.isEnabledFor(levelno):  # also logging.disable and a disabled logger
        return None
    handler = handlers[0]
    if (
        type(handler) is not OTelLogHandler
        or handler.filters
        or handler.formatter is not None
        or levelno < handler.level
        or "emit" in handler.__dict__
    ):
        return None
    return handler


def _keyword_emit(provider: Any) -> bool:
    try:
        params = inspect.signature(type(provider.get_logger("jobpulse")).emit).parameters
    except (TypeError, ValueError):
        return False
    return "body" in params and "attributes" in params


def make_handler(logger_provider: Any) -> logging.Handler | None:
    """jobpulse's handler where the logs API allows it, else the SDK's (deprecated) one."""
    if _keyword_emit(logger_provider):
        return OTelLogHandler(logger_provider)
    try:
        import warnings

        from opentelemetry.sdk._logs import LoggingHandler
    except ImportError:  # pragma: no cover - an SDK without logs
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(logger_provider=logger_provider)


def is_otel_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, OTelLogHandler) or type(handler).__name__ == "LoggingHandler"
