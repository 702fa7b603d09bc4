"""Dependency calls detected automatically inside runs: calls that can wait forever.

With ``instrument()`` (off: ``detect_dependencies=False`` /
``JOBPULSE_DETECT_DEPENDENCIES=0``), calls made *inside a run* through

- urllib3, and so requests (``http:{host}``),
- httpx, through httpcore (``http:{host}``),
- redis-py commands (``redis:{host}``),
- raw TCP sockets at ``connect`` (``tcp:{host}:{port}``),

are recorded as dependency calls with their effective timeout: the
``jobpulse.dependency.*`` attributes go on the official instrumentation's
CLIENT span when there is one (jobpulse turns on
opentelemetry-instrumentation-requests if it is installed and not already on);
with none, HTTP calls get a jobpulse INTERNAL dependency span, redis and socket
calls only metrics. The run's "waiting on" is set for the watchdog's stall
report, ``jobpulse.dependency.duration`` is recorded, and a call with no
timeout increments ``jobpulse.dependency.unbounded_calls`` and logs a warning
once per call site (file and line of the first frame outside the client
libraries). Calls outside runs, and jobpulse's own, are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _guard
from .. import _names as n
from .._context import current

if TYPE_CHECKING:
    from .._runtime import Runtime

_log = logging.getLogger(n.LOGGER_NAME)

#: True while jobpulse itself (or a detected call already being recorded) talks to a
#: dependency: nested calls are not recorded again.
_inside: ContextVar[bool] = ContextVar("jobpulse_autodeps_inside", default=False)


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """Calls made in this block are not recorded as the run's dependencies."""
    token = _inside.set(True)
    try:
        yield
    finally:
        _inside.reset(token)


def active() -> bool:
    """Is there a run to attribute a call to (and are we not already inside one)?

    Calls a job framework makes itself inside a run (Celery publishing a chain's next
    task or storing a result, through kombu/redis) are not the run's dependencies."""
    return current.get() is not None and not _inside.get() and not framework_call()


# -- call sites ------------------------------------------------------------------
_LIBRARY_MODULES = (
    "jobpulse",
    "requests",
    "urllib3",
    "httpx",
    "httpcore",
    "redis",
    "opentelemetry",
    "wrapt",
    "socket",
    "ssl",
    "http",
    "contextlib",
    "anyio",
    "h11",
    "selectors",
)
_prefixes: tuple[str, ...] | None = None
_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()
MAX_WARNED_SITES = 1000


def _library_prefixes() -> tuple[str, ...]:
    global _prefixes
    if _prefixes is None:
        out: list[str] = []
        for name in _LIBRARY_MODULES:
            module = sys.modules.get(name)
            paths = getattr(module, "__path__", None)  # packages, namespace ones too
            if paths is not None:
                out.extend(os.path.join(p, "") for p in paths)
                continue
            path = getattr(module, "__file__", None)
            if path:
                out.append(path)
        _prefixes = tuple(out)
    return _prefixes


def call_site() -> tuple[str, int]:
    """File and line of the innermost frame outside jobpulse and the client libraries."""
    prefixes = _library_prefixes()
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(prefixes) and not filename.startswith("<frozen"):
            return filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>", 0


#: job frameworks whose own calls inside a run are not the run's dependencies
_FRAMEWORK_MODULES = ("celery", "kombu", "billiard", "amqp")
_framework: tuple[int, tuple[str, ...]] = (0, ())


def _framework_prefixes() -> tuple[str, ...]:
    """Paths of the loaded framework packages (recomputed when more are loaded)."""
    global _framework
    loaded = [m for m in (sys.modules.get(name) for name in _FRAMEWORK_MODULES) if m]
    if len(loaded) != _framework[0]:
        out: list[str] = []
        for module in loaded:
            paths = getattr(module, "__path__", None)
            if paths is not None:
                out.extend(os.path.join(p, "") for p in paths)
            elif getattr(module, "__file__", None):
                out.append(module.__file__)  # type: ignore[arg-type]
        _framework = (len(loaded), tuple(out))
    return _framework[1]


def framework_call() -> bool:
    """The innermost caller outside jobpulse and the client libraries is a job
    framework's own code (celery, kombu, billiard, amqp), not the job's."""
    frameworks = _framework_prefixes()
    if not frameworks:
        return False
    filename, _ = call_site()
    return filename.startswith(frameworks)


# -- one detected call -------------------------------------------------------------
class Call:
    """Track one dependency call of the current run (a no-op outside runs).

    ``own_span``: make a jobpulse INTERNAL dependency span when the current span is
    not an instrumentation's CLIENT span.
    """

    __slots__ = ("inside_token", "name", "otel_token", "run", "saved", "span", "started", "timeout")

    def __init__(self, name: str, timeout: float | None, *, own_span: bool) -> None:
        from .. import _runtime

        self.run = current.get()
        self.name = name
        self.timeout = timeout
        self.span: Any = None
        self.otel_token: Any = None
        self.saved: Any = None
        self.inside_token = _inside.set(True)
        self.started = time.monotonic()
        rt = _runtime.get()
        run = self.run
        if rt is None or run is None:
            return
        with _guard.never_raise("autodeps"):
            attrs: dict[str, Any] = {n.DEPENDENCY_NAME: name}
            if timeout is not None:
                attrs[n.DEPENDENCY_TIMEOUT] = float(timeout)
            else:
                rt.instruments.record_unbounded(name)
                _warn_unbounded(run, name)
            span = trace.get_current_span()
            if span.is_recording() and getattr(span, "kind", None) is SpanKind.CLIENT:
                span.set_attributes(attrs)
                self.span = span
            elif own_span:
                self.span = rt.tracer.start_span(name, attributes=attrs)
                self.otel_token = otel_context.attach(trace.set_span_in_context(self.span))
            self.saved = (run.dependency, run.dep_started, run.dep_timeout)
            run.dependency, run.dep_started, run.dep_timeout = name, self.started, timeout

    def end(self, exc: BaseException | None) -> None:
        from .. import _runtime
        from .._api import _is_timeout

        try:
            _inside.reset(self.inside_token)
        except ValueError:  # ended in another context
            _inside.set(False)
        run, rt = self.run, _runtime.get()
        if run is None or rt is None:
            return
        with _guard.never_raise("autodeps"):
            elapsed = time.monotonic() - self.started
            if _is_timeout(exc) or (self.timeout is not None and elapsed > self.timeout):
                outcome = "timeout"
            elif exc is not None:
                outcome = "error"
            else:
                outcome = "ok"
            if self.saved is not None:
                run.dependency, run.dep_started, run.dep_timeout = self.saved
            rt.instruments.record_dependency(self.name, outcome, elapsed)
            span = self.span
            if span is not None:
                span.set_attribute(n.DEPENDENCY_OUTCOME, outcome)
                if self.otel_token is not None:  # our own span
                    otel_context.detach(self.otel_token)
                    if outcome != "ok":
                        if exc is not None:
                            span.record_exception(exc)
                        span.set_status(
                            Status(StatusCode.ERROR, type(exc).__name__ if exc else "timeout")
                        )
                    span.end()


def _warn_unbounded(run: Any, name: str) -> None:
    site = call_site()
    with _warned_lock:
        if site in _warned or len(_warned) >= MAX_WARNED_SITES:
            return
        _warned.add(site)
    from .. import _lifecycle

    where = f"{site[0]}:{site[1]}"
    _lifecycle.emit_log(
        run,
        logging.WARNING,
        f"dependency call with no timeout: {name} at {where} can wait forever",
        {n.DEPENDENCY_NAME: name, n.DEPENDENCY_CALL_SITE: where},
    )


def forget_call_sites() -> None:
    """Warn again for every call site (tests)."""
    with _warned_lock:
        _warned.clear()


# -- installation ------------------------------------------------------------------
_installed: list[Any] = []  # objects with .uninstall()
_lock = threading.Lock()


def install(rt: Runtime) -> None:
    """Hook the clients (now if imported, else when they are). Called by ``instrument()``."""
    if not rt.settings.detect_dependencies:
        return
    from ..adapters._importhook import when_imported
    from . import _clients

    global _prefixes
    _prefixes = None
    for module, hook in _clients.HOOKS:

        def on_import(_module: Any, hook: Any = hook) -> None:
            from .. import _runtime

            if _runtime.get() is not rt:
                return
            try:
                patch = hook(rt)
            except Exception as exc:  # noqa: BLE001 - a client we cannot hook stays unhooked
                _guard.report("autodeps.install", exc)
                return
            if patch is not None:
                with _lock:
                    _installed.append(patch)

        when_imported(module, on_import)


def uninstall() -> None:
    """Undo every patch (``uninstrument()``)."""
    global _prefixes
    with _lock:
        patches = list(reversed(_installed))
        _installed.clear()
    for patch in patches:
        try:
            patch.uninstall()
        except Exception as exc:  # noqa: BLE001
            _guard.report("autodeps.uninstall", exc)
    _prefixes = None
