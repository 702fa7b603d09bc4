"""The producer context in a job's meta reads as the W3C propagator would read it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from jobpulse.adapters.rq import _meta

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENTS = [
    f"00-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-00",
    f"00-{TRACE}-{SPAN}-ff",
    f"00-{TRACE.upper()}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"ff-{TRACE}-{SPAN}-01",
    f"01-{TRACE}-{SPAN}-01-future",
    f"00-{TRACE}-{SPAN}-01-extra",
    f" 00-{TRACE}-{SPAN}-01\t",
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE}a-{SPAN}-01",
    "",
    "garbage",
]
STATES: list[Any] = [None, "", "vendor=abc,other=1", 17]


def reference(found: dict[str, Any], key: str) -> Any:
    """What jobpulse read before the fast path: the propagator, always."""
    value = found.get(key)
    if not isinstance(value, str):
        return None
    carrier = {"traceparent": value}
    state = found.get("tracestate") if key == "traceparent" else None
    if isinstance(state, str) and state:
        carrier["tracestate"] = state
    extracted = TraceContextTextMapPropagator().extract(carrier)
    ctx = trace.get_current_span(extracted).get_span_context()
    return ctx if ctx.is_valid else None


@pytest.mark.parametrize(("value", "state"), list(itertools.product(TRACEPARENTS, STATES)))
def test_a_stored_traceparent_reads_as_the_propagator_reads_it(value: str, state: Any) -> None:
    found: dict[str, Any] = {"traceparent": value, "previous": value}
    if state is not None:
        found["tracestate"] = state
    for key in ("traceparent", "previous"):
        got, want = _meta.span_context(found, key), reference(found, key)
        assert got == want
        if want is not None:
            assert got is not None
            assert (got.is_remote, got.trace_flags, got.trace_state) == (
                want.is_remote, want.trace_flags, want.trace_state,
            )  # fmt: skip
