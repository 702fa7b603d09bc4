"""jobpulse's OTel log handler: the contract's fields, the run's trace, no jobpulse-internal
``code.*`` noise, and the exception when there is one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from jobpulse._loghandler import OTelLogHandler, make_handler, severity_number

try:  # its name since SDK 1.39
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogExporter
except ImportError:  # pragma: no cover
    from opentelemetry.sdk._logs.export import InMemoryLogExporter


@pytest.fixture
def exported() -> Iterator[tuple[logging.Logger, InMemoryLogExporter]]:
    exporter = InMemoryLogExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = make_handler(provider)
    assert isinstance(handler, OTelLogHandler)  # the installed SDK has keyword emit
    logger = logging.getLogger("jobpulse.test-loghandler")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger, exporter
    finally:
        logger.removeHandler(handler)


def _records(exporter: InMemoryLogExporter) -> list[Any]:
    return [getattr(d, "log_record", d) for d in exporter.get_finished_logs()]


def test_fields_and_trace_context_are_exported(
    exported: tuple[logging.Logger, InMemoryLogExporter],
) -> None:
    logger, exporter = exported
    span = TracerProvider().get_tracer("t").start_span("job")
    with trace.use_span(span, end_on_exit=True):
        logger.warning("run finished", extra={"jobpulse.job.name": "emails.send", "x.n": 3})
    (record,) = _records(exporter)
    assert record.body == "run finished"
    assert record.severity_number == SeverityNumber.WARN
    assert record.severity_text == "WARN"
    attrs = dict(record.attributes)
    assert attrs["jobpulse.job.name"] == "emails.send"
    assert attrs["x.n"] == 3
    assert not [k for k in attrs if k.startswith("code.")]  # jobpulse's own file/line
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id


def test_exception_is_exported(exported: tuple[logging.Logger, InMemoryLogExporter]) -> None:
    logger, exporter = exported
    try:
        raise ValueError("bad input", 42)
    except ValueError:
        logger.exception("run finished")
    (record,) = _records(exporter)
    attrs = dict(record.attributes)
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "bad input"
    assert "Traceback" in attrs["exception.stacktrace"]
    assert record.severity_number == SeverityNumber.ERROR


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, SeverityNumber.DEBUG),
        (logging.INFO, SeverityNumber.INFO),
        (logging.INFO + 2, SeverityNumber.INFO3),
        (logging.WARNING, SeverityNumber.WARN),
        (logging.ERROR, SeverityNumber.ERROR),
        (logging.CRITICAL, SeverityNumber.FATAL),
        (logging.CRITICAL + 9, SeverityNumber.FATAL4),
    ],
)
def test_severity_follows_the_logs_data_model(level: int, expected: SeverityNumber) -> None:
    assert severity_number(level) == expected


def test_the_rq_hand_off_finds_the_log_pipeline_through_the_handler() -> None:
    """A work horse's hand-off watches the provider's pipeline for other handlers' records
    (``adapters.rq._handoff``): it must be where the SDK's handler kept it, or those
    records die with the horse."""
    provider = LoggerProvider()
    handler = make_handler(provider)
    assert getattr(handler, "_logger_provider", None) is provider
