"""asyncio: coroutines scheduled as tasks become runs, with no decorator.

``instrument(asyncio_jobs=["myapp.workers.*"])`` makes every coroutine whose
qualified name (``module.qualname``) matches a pattern, when scheduled through
``asyncio.create_task``, ``loop.create_task`` or ``asyncio.ensure_future``,
one run of the job named by its qualified name (``jobpulse.system=asyncio``).
The patch sits on ``asyncio.BaseEventLoop.create_task``, through which all
three go on the standard event loop.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from .. import _guard

if TYPE_CHECKING:
    from .._runtime import Runtime


def _drive_code() -> Any:
    from .._api import drive_coroutine

    return drive_coroutine.__code__


_DRIVE_CODE = _drive_code()


def coroutine_name(coro: Any) -> str | None:
    qualname = getattr(coro, "__qualname__", None)
    if qualname is None:
        return None
    frame = getattr(coro, "cr_frame", None)
    module = frame.f_globals.get("__name__") if frame is not None else None
    return f"{module}.{qualname}" if module and module != "__main__" else str(qualname)


class AsyncioAdapter:
    name = "asyncio"
    framework = "asyncio"

    def __init__(self) -> None:
        self._original: Any = None
        self._patterns: tuple[str, ...] = ()

    def _matches(self, coro: Any) -> str | None:
        if not asyncio.iscoroutine(coro) or getattr(coro, "cr_code", None) is _DRIVE_CODE:
            return None
        name = coroutine_name(coro)
        if name is None:
            return None
        qualname = getattr(coro, "__qualname__", "")
        for pattern in self._patterns:
            if fnmatchcase(name, pattern) or fnmatchcase(qualname, pattern):
                return name
        return None

    def install(self, runtime: Runtime) -> None:
        if self._original is not None:
            return
        from .._api import drive_coroutine

        self._patterns = runtime.settings.asyncio_jobs
        original = asyncio.base_events.BaseEventLoop.create_task
        adapter = self

        def create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
            name = None
            with _guard.never_raise("adapter.asyncio"):
                name = adapter._matches(coro)
            if name is not None:
                wrapped = drive_coroutine(coro, name, code_function=name)
                wrapped.__qualname__ = getattr(coro, "__qualname__", name)  # type: ignore[attr-defined]
                coro = wrapped
            return original(self, coro, *args, **kwargs)

        create_task.__wrapped__ = original  # type: ignore[attr-defined]
        asyncio.base_events.BaseEventLoop.create_task = create_task  # type: ignore[method-assign]
        self._original = original

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.base_events.BaseEventLoop.create_task = self._original  # type: ignore[method-assign]
            self._original = None


ADAPTER = AsyncioAdapter()
