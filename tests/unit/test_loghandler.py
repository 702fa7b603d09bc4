"""jobpulse's OTel log handler: the contract's fields, the run's trace, no jobpulse-internal
``code.*`` noise, and the exception when there is one."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _otel_handler_alone(logger: logging.Logger) -> Iterator[None]:
    """pytest attaches its capture handlers to every non-propagating logger for each
    test phase; the direct path is about a logger with jobpulse's handler alone."""
    others = [h for h in logger.handlers if not isinstance(h, OTelLogHandler)]
    for h in others:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in others:
            logger.addHandler(h)


def _line(direct: bool, exporter: InMemoryLogExporter, logger: logging.Logger) -> Any:
    from jobpulse._loghandler import direct_handler

    span = TracerProvider().get_tracer("t").start_span("job")
    fields = {"jobpulse.job.name": "emails.send", "jobpulse.attempt": 2, "jobpulse.elapsed": 0.5}
    handler = direct_handler(logger, logging.ERROR)
    assert (handler is not None) is direct
    if handler is not None:
        context = trace.set_span_in_context(span)
        handler.emit_fields(logger.name, logging.ERROR, "run finished", dict(fields), context)
    else:
        with trace.use_span(span):
            logger.error("run finished", extra=fields)
    (record,) = _records(exporter)
    exporter.clear()
    return record, span.get_span_context()


def test_direct_line_equals_the_stdlib_line(
    exported: tuple[logging.Logger, InMemoryLogExporter],
) -> None:
    """A run's lines skip the stdlib LogRecord when only jobpulse's OTel handler would see
    them; what is exported must not change."""
    logger, exporter = exported
    with _otel_handler_alone(logger):
        logger.addFilter(lambda record: True)  # a filter forces the stdlib path
        via_stdlib, ctx_a = _line(False, exporter, logger)
        logger.filters.clear()
        direct, ctx_b = _line(True, exporter, logger)
    for record, ctx in ((via_stdlib, ctx_a), (direct, ctx_b)):
        assert record.body == "run finished"
        assert record.severity_number == SeverityNumber.ERROR
        assert record.severity_text == "ERROR"
        assert dict(record.attributes) == {
            "jobpulse.job.name": "emails.send", "jobpulse.attempt": 2, "jobpulse.elapsed": 0.5,
        }  # fmt: skip
        assert (record.trace_id, record.span_id) == (ctx.trace_id, ctx.span_id)
        assert record.timestamp
        assert record.observed_timestamp


def test_anything_else_that_would_see_a_line_takes_the_stdlib_path(
    exported: tuple[logging.Logger, InMemoryLogExporter],
) -> None:
    from jobpulse._loghandler import direct_handler

    logger, _ = exported
    with _otel_handler_alone(logger):
        _check_paths(logger, direct_handler)


def _check_paths(logger: logging.Logger, direct_handler: Any) -> None:
    (handler,) = logger.handlers
    assert direct_handler(logger, logging.INFO) is handler
    assert direct_handler(logger, logging.DEBUG) is None  # the logger's level drops it
    second = logging.NullHandler()
    logger.addHandler(second)
    assert direct_handler(logger, logging.INFO) is None
    logger.removeHandler(second)
    logger.propagate = True
    assert direct_handler(logger, logging.INFO) is None
    logger.propagate = False
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert direct_handler(logger, logging.INFO) is None
    handler.setFormatter(None)  # type: ignore[arg-type]
    handler.emit = lambda record: None  # type: ignore[method-assign]  # the RQ hand-off's capture
    assert direct_handler(logger, logging.INFO) is None
    del handler.emit
    logging.disable(logging.INFO)
    try:
        assert direct_handler(logger, logging.INFO) is None
    finally:
        logging.disable(logging.NOTSET)
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *a, **k: factory(*a, **k))  # adds fields, say
    try:
        assert direct_handler(logger, logging.INFO) is None
    finally:
        logging.setLogRecordFactory(factory)
    logger.disabled = True
    try:
        assert direct_handler(logger, logging.INFO) is None
    finally:
        logger.disabled = False
    assert direct_handler(logger, logging.INFO) is handler
