"""The process's jobpulse state: settings, providers, instruments, watchdog, adapters.

There is at most one :class:`Runtime` per process. ``instrument()`` builds it,
``uninstrument()`` tears it down; both are idempotent. After a fork the child
keeps the settings but gets an empty registry and, where jobpulse built the
MeterProvider, a fresh one (see :mod:`jobpulse._otel`).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any

from opentelemetry.trace import Tracer

from . import _encoding, _guard, _otel
from . import _names as n
from ._config import Settings, load_settings
from ._instruments import Instruments
from ._registry import Registry
from ._version import VERSION

_log = logging.getLogger(n.LOGGER_NAME)


class Runtime:
    """Everything ``instrument()`` set up, so ``uninstrument()`` can undo exactly that."""

    def __init__(
        self, settings: Settings, registry: Registry, exporters: _otel.Exporters | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.exporters = exporters
        self.providers = _otel.setup(settings, exporters)
        self.tracer: Tracer = self.providers.tracer_provider.get_tracer(
            n.INSTRUMENTATION_NAME, VERSION, schema_url=n.SCHEMA_URL
        )
        self.instruments = Instruments(self.providers.meter_provider, registry)
        self.pid = os.getpid()
        self.log_handlers: list[logging.Handler] = []
        self.adapters: list[Any] = []
        self.watchdog: Any = None
        self.worker_name: str | None = None

    def after_fork_in_child(self) -> None:
        """Fresh state for a forked child: none of the parent's runs or metric state."""
        self.registry.clear()
        self.pid = os.getpid()
        if "meter" in self.providers.owned:
            _otel.silence_inherited_readers(self.providers.metric_readers)
            self._child_metrics_pending = True
            if not defer_child_metrics:
                self.child_metrics()
        if not defer_child_metrics:
            # A child that exports on its own (a pool process) must not share the
            # parent's keep-alive connections to the collector. (An RQ horse defers
            # this until its run turns long: most never export themselves.)
            _otel.fresh_connections(self.providers.tracer_provider, self.providers.logger_provider)
        if self.watchdog is not None:
            self.watchdog.restart_after_fork()

    def child_metrics(self) -> None:
        """Build a forked child's own MeterProvider, if it still has the parent's.

        Runs at fork unless :data:`defer_child_metrics` was set for that fork (an
        RQ work horse, whose counters go to its parent, builds it only for a long
        run's gauges); idempotent.
        """
        if getattr(self, "_child_metrics_pending", False):
            self._child_metrics_pending = False
            from_env = self.exporters is None or self.exporters.from_env
            exporter = _otel._metric_exporter() if from_env else None
            if not from_env and self.exporters is not None:
                exporter = self.exporters.metric
            mp, readers = _otel.build_meter_provider(
                self.providers.meter_provider._sdk_config.resource, exporter
            )
            self.providers.meter_provider = mp
            self.providers.metric_readers = readers
            self.providers.prometheus = None
            self.instruments = Instruments(mp, self.registry)
            _guard.set_counter(self.instruments.record_telemetry_error)

    def flush(self, timeout: float | None = None) -> bool:
        return _otel.flush_providers(
            self.providers, self.settings.flush_timeout if timeout is None else timeout
        )


_lock = threading.RLock()
_runtime: Runtime | None = None
_registry = Registry()
_fork_hook_installed = False
_atexit_installed = False

#: Set around a fork whose child builds its MeterProvider only when it calls
#: ``Runtime.child_metrics()`` (the RQ adapter, for work horses: forking costs less).
defer_child_metrics = False


def get() -> Runtime | None:
    """The current runtime, or None when jobpulse is not instrumented."""
    return _runtime


def registry() -> Registry:
    return _registry


def _after_fork_in_child() -> None:
    rt = _runtime
    if rt is not None:
        try:
            rt.after_fork_in_child()
        except Exception as exc:  # noqa: BLE001 - never break the child
            _guard.report("fork", exc)


def _exit_flush() -> None:
    rt = _runtime
    if rt is None or rt.pid != os.getpid():
        return
    timeout = rt.settings.flush_timeout
    rt.flush(timeout)
    _otel.shutdown_owned(rt.providers, min(timeout, 2.0))


def _install_log_handlers(rt: Runtime) -> None:
    logger = logging.getLogger(n.LOGGER_NAME)
    from .logs import JsonFormatter, TextFormatter

    if rt.settings.log_format is not None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter() if rt.settings.log_format == "json" else TextFormatter()
        )
        rt.log_handlers.append(handler)
    if rt.providers.logger_provider is not None:
        from ._loghandler import make_handler

        otel_handler = make_handler(rt.providers.logger_provider)
        if otel_handler is not None:
            rt.log_handlers.append(otel_handler)
    for handler in rt.log_handlers:
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
    if rt.log_handlers:
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        # jobpulse's lines now have a home; do not repeat them through the root logger.
        logger.propagate = False


def _remove_log_handlers(rt: Runtime) -> None:
    logger = logging.getLogger(n.LOGGER_NAME)
    for handler in rt.log_handlers:
        logger.removeHandler(handler)
    if rt.log_handlers:
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    rt.log_handlers.clear()


def instrument(_exporters: _otel.Exporters | None = None, **options: Any) -> Runtime:
    """Build the runtime (idempotent: a second call returns the first runtime)."""
    global _runtime, _fork_hook_installed, _atexit_installed
    with _lock:
        if _runtime is not None:
            if options:
                _log.debug("jobpulse.instrument() called again; the first call's settings stay")
            return _runtime
        settings = load_settings(options)
        _clear_caches()
        rt = Runtime(settings, _registry, _exporters)
        _guard.set_counter(rt.instruments.record_telemetry_error)
        if settings.fast_export:
            _encoding.install()
        _install_log_handlers(rt)
        from ._watchdog import Watchdog

        rt.watchdog = Watchdog(rt)
        rt.watchdog.start()
        _runtime = rt
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
        if not _atexit_installed:
            atexit.register(_exit_flush)
            _atexit_installed = True
        from .adapters import install_adapters

        try:
            install_adapters(rt)
        except BaseException:
            _uninstrument_locked()
            raise
        from .autodeps import install as install_autodeps

        install_autodeps(rt)  # dependency calls inside runs (docs/guardrails.md)
        return rt


def _uninstrument_locked() -> None:
    global _runtime
    rt = _runtime
    if rt is None:
        return
    from .adapters import uninstall_adapters

    uninstall_adapters(rt)
    from .autodeps import uninstall as uninstall_autodeps

    uninstall_autodeps()
    if rt.watchdog is not None:
        rt.watchdog.stop()
    _remove_log_handlers(rt)
    _guard.set_counter(None)
    rt.flush(rt.settings.flush_timeout)
    if rt.providers.prometheus is not None:
        # Unregister the reader's collector too: a later instrument() would serve
        # duplicate, stale series next to the new ones.
        try:
            rt.providers.prometheus.shutdown()
        except Exception as exc:  # noqa: BLE001
            _guard.report("prometheus", exc)
        _otel.stop_prometheus()
    _runtime = None
    _registry.clear()
    _clear_caches()
    _encoding.uninstall()


def _clear_caches() -> None:
    from ._lifecycle import budget_cache

    budget_cache.clear()


def uninstrument() -> None:
    """Remove every hook and stop the watchdog (idempotent)."""
    with _lock:
        _uninstrument_locked()
