"""Framework adapters: one module each, installed lazily, never breaking the host.

An adapter only translates a framework's lifecycle into the verbs of
:mod:`jobpulse._lifecycle`. It is installed when its framework is imported
(now, if it already is), so ``instrument()`` may run before or after
``import celery``. A framework that is missing or broken (``import rq`` raises
``ValueError`` for a bad ``RQ_KEY_PREFIX``) disables its adapter quietly when
auto-detected, and fails ``instrument()`` loudly when the user named it in
``adapters=[...]``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any, Protocol

from .. import _guard
from .._config import ConfigurationError
from ._importhook import cancel_hooks, when_imported

if TYPE_CHECKING:
    from .._runtime import Runtime

_log = logging.getLogger("jobpulse")


class Adapter(Protocol):
    """What an adapter module provides: ``ADAPTER``, an object with these methods."""

    name: str
    framework: str  # the top-level module whose import triggers installation

    def install(self, runtime: Runtime) -> None: ...

    def uninstall(self) -> None: ...


class AdapterUnavailable(ConfigurationError):
    """A framework the user asked for by name is missing, too old or broken."""


#: adapter name -> module that defines ADAPTER
REGISTRY: dict[str, str] = {
    "celery": "jobpulse.adapters.celery",
    "rq": "jobpulse.adapters.rq",
    "asyncio": "jobpulse.adapters.asyncio",
}


def _load(name: str) -> Adapter:
    module = importlib.import_module(REGISTRY[name])
    return module.ADAPTER  # type: ignore[no-any-return]


def _install_one(rt: Runtime, adapter: Adapter, explicit: bool) -> None:
    try:
        adapter.install(rt)
    except Exception as exc:
        if explicit:
            raise AdapterUnavailable(
                f"instrument(adapters=[{adapter.name!r}]): could not enable the {adapter.name} "
                f"adapter: {exc}"
            ) from exc
        _guard.report(f"adapter.{adapter.name}", exc)
        return
    rt.adapters.append(adapter)


def install_adapters(rt: Runtime) -> None:
    explicit = rt.settings.adapters is not None
    names = rt.settings.adapters if explicit else tuple(REGISTRY)
    for name in names or ():
        if name == "asyncio" and not rt.settings.asyncio_jobs and not explicit:
            continue
        try:
            adapter = _load(name)
        except Exception as exc:
            if explicit:
                raise AdapterUnavailable(
                    f"instrument(adapters=[{name!r}]): the {name} adapter is unavailable: {exc}"
                ) from exc
            _log.debug("jobpulse: %s adapter unavailable: %s", name, exc)
            continue
        framework = adapter.framework
        if framework in sys.modules:
            _install_one(rt, adapter, explicit)
        elif explicit:
            try:
                importlib.import_module(framework)
            except Exception as exc:
                raise AdapterUnavailable(
                    f"instrument(adapters=[{name!r}]): cannot import {framework}: {exc!r}; "
                    f"install it with pip install 'jobpulse[{name}]'"
                ) from exc
            _install_one(rt, adapter, explicit)
        else:

            def on_import(_module: Any, adapter: Adapter = adapter) -> None:
                from .. import _runtime

                current = _runtime.get()
                if current is rt:
                    _install_one(rt, adapter, False)

            when_imported(framework, on_import)


def uninstall_adapters(rt: Runtime) -> None:
    cancel_hooks()
    while rt.adapters:
        adapter = rt.adapters.pop()
        try:
            adapter.uninstall()
        except Exception as exc:  # noqa: BLE001
            _guard.report(f"adapter.{adapter.name}", exc)
