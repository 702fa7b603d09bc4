"""Run a callback right after a module is first imported (a post-import hook).

Lets ``instrument()`` come before ``import celery`` without importing celery
itself: importing a framework the process does not use costs start-up time
and, for some frameworks, can fail.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_pending: dict[str, list[Callable[[ModuleType], None]]] = {}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None and spec.loader is not None:
                _wrap_loader(spec)
                return spec
        return None


def _wrap_loader(spec: importlib.machinery.ModuleSpec) -> None:
    loader: Any = spec.loader
    original = loader.exec_module

    class _Loader(importlib.abc.Loader):
        def create_module(self, s: importlib.machinery.ModuleSpec) -> ModuleType | None:
            return loader.create_module(s)  # type: ignore[no-any-return]

        def exec_module(self, module: ModuleType) -> None:
            original(module)
            with _lock:
                callbacks = _pending.pop(module.__name__, [])
            for callback in callbacks:
                try:
                    callback(module)
                except Exception:  # noqa: BLE001 - adapters report their own failures
                    pass

        def __getattr__(self, name: str) -> Any:
            return getattr(loader, name)

    spec.loader = _Loader()


_finder = _Finder()


def when_imported(module: str, callback: Callable[[ModuleType], None]) -> None:
    with _lock:
        if module in sys.modules:
            ready = True
        else:
            ready = False
            _pending.setdefault(module, []).append(callback)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
    if ready:
        callback(sys.modules[module])


def cancel_hooks() -> None:
    with _lock:
        _pending.clear()
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
