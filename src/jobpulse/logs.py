"""Structured log lines that answer "what is this run waiting on, and for how long".

jobpulse logs through the stdlib logger ``jobpulse``. Each record carries the
contract's dotted attribute names (so OTel's ``LoggingHandler`` exports them
as they are); :class:`JsonFormatter` writes them with the field names operators
already use in heartbeat logs (``job``, ``runId``, ``elapsedMs`` ...)::

    import logging, jobpulse.logs
    handler = logging.StreamHandler()
    handler.setFormatter(jobpulse.logs.JsonFormatter())
    logging.getLogger("jobpulse").addHandler(handler)

or ``instrument(log_format="json")`` / ``JOBPULSE_LOG_FORMAT=json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from typing import Any

from opentelemetry import trace

from . import _names as n

#: dotted record attribute -> JSON field, in output order after ts/level/msg.
FIELDS: tuple[tuple[str, str], ...] = (
    (n.JOB_NAME, "job"),
    (n.RUN_ID, "runId"),
    (n.JOB_ID, "jobId"),
    (n.ATTEMPT, "attempt"),
    (n.MESSAGING_CLIENT_ID, "worker"),
    (n.STEP_NAME, "step"),
    (n.PROGRESS_PROCESSED, "processed"),
    (n.PROGRESS_TOTAL, "total"),
    (n.OUTCOME, "outcome"),
    (n.ACTION, "action"),
    (n.STALL_REASON, "stallReason"),
    (n.ERROR_TYPE, "errorType"),
)
STACK_ATTR = "code.stacktrace"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The operator-facing fields of one jobpulse log record (without ts/level/msg)."""
    attrs = record.__dict__
    out: dict[str, Any] = {}
    for attr, key in FIELDS:
        value = attrs.get(attr)
        if value is not None:
            out[key] = value
    elapsed = attrs.get(n.ELAPSED)
    if elapsed is not None:
        out["elapsedMs"] = round(elapsed * 1000)
    if attrs.get(n.HEARTBEAT_COUNT) is not None and attrs.get(n.OUTCOME) is None:
        out["heartbeat"] = True
    dependency = attrs.get(n.DEPENDENCY_NAME)
    if dependency is not None:
        out["waitingOn" if n.STALL_REASON in attrs else "dependency"] = dependency
    timeout = attrs.get(n.DEPENDENCY_TIMEOUT)
    if timeout is not None:
        out["timeoutMs"] = round(timeout * 1000)
    stack = attrs.get(STACK_ATTR)
    if stack:
        out["stack"] = stack.splitlines()
    trace_id, span_id = _correlation(record)
    if trace_id:
        out["traceId"] = trace_id
        out["spanId"] = span_id
    return out


def _correlation(record: logging.LogRecord) -> tuple[str | None, str | None]:
    attrs = record.__dict__
    if "otelTraceID" in attrs and attrs["otelTraceID"] not in (None, "0"):
        return str(attrs["otelTraceID"]), str(attrs.get("otelSpanID"))
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return None, None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``msg``, then the contract's fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        out.update(record_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level message key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc)
        fields = record_fields(record)
        stack = fields.pop("stack", None)
        fields.pop("spanId", None)
        parts = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{ts:%H:%M:%S} {record.levelname:<7} {record.getMessage()} {parts}".rstrip()
        if stack:
            line += "".join(f"\n    {frame}" for frame in stack)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
