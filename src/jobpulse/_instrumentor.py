"""The ``opentelemetry_instrumentor`` entry point: ``opentelemetry-instrument`` loads jobpulse.

The auto-instrumentation distro sets up the SDK first, so jobpulse finds
providers already set and uses them (``configure_otel=None``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

try:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
except ImportError:  # pragma: no cover - opentelemetry-instrumentation not installed

    class BaseInstrumentor:  # type: ignore[no-redef]
        def instrument(self, **kwargs: Any) -> None:
            self._instrument(**kwargs)  # type: ignore[attr-defined]

        def uninstrument(self, **kwargs: Any) -> None:
            self._uninstrument(**kwargs)  # type: ignore[attr-defined]


class JobpulseInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Loads jobpulse with its settings from ``JOBPULSE_*`` variables."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        import jobpulse

        options = {k: v for k, v in kwargs.items() if k in ("tracer_provider", "meter_provider")}
        jobpulse.instrument(**options)

    def _uninstrument(self, **kwargs: Any) -> None:
        import jobpulse

        jobpulse.uninstrument()
