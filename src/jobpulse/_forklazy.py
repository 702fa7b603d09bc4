"""Batch processors that start their export thread in a forked child only when needed.

After every fork the SDK's span and log batch processors start a new export
thread in the child, whether or not the child will ever export. An RQ work
horse that hands its spans and lines to its parent (``adapters/rq/_handoff``)
never does, yet paid for two thread starts per job: about 1 ms each on a
2-core machine, on a forking worker whose whole job costs 20 to 30 ms.

The processors jobpulse builds defer that start: the fork handler only resets
what the parent's threads may have held (lock, wake-up event, queue), and the
first record the child emits starts the thread, through the SDK's own
"emitted after a fork" check. A child that never emits never starts one.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import os
import threading
from collections.abc import Iterator
from typing import Any

#: ``_pid`` of a forked child's processor whose export thread is not started yet
LAZY = -1
_MODULES = ("opentelemetry.sdk.trace.export", "opentelemetry.sdk._logs._internal.export")
_NEEDED = (
    "_at_fork_reinit", "_export_lock", "_worker_awaken", "_queue", "_pid", "emit",
    "_worker_thread", "_exporting", "def worker",
)  # fmt: skip
_lock = threading.Lock()
_classes: dict[type, type] = {}


def _lazy_class(base: type) -> type:
    found = _classes.get(base)
    if found is not None:
        return found

    from opentelemetry.util._once import Once

    class ForkLazyBatchProcessor(base):  # type: ignore[valid-type, misc]
        _pid: int
        _queue: collections.deque[Any]
        _inherited: collections.deque[Any] | None
        _exporting: str
        _worker_thread: threading.Thread

        def _at_fork_reinit(self) -> None:
            if self._pid == LAZY:  # the child's first emit: now it needs the thread
                # Only the thread: records already queued stay (a fork that ran no
                # Python fork handlers, uWSGI's, arrives here on its second emit).
                self._inherited = None  # now the parent's records may be freed
                self._worker_thread = threading.Thread(
                    name=f"OtelBatch{self._exporting}RecordProcessor",
                    target=self.worker,
                    daemon=True,
                )
                self._worker_thread.start()
                self._pid = os.getpid()
                return
            # the fork handler: nothing of the parent's threads may stay held
            self._export_lock = threading.Lock()
            self._worker_awaken = threading.Event()
            # A new queue, the parent's kept aside: clearing it would touch every
            # record the parent had not exported yet (copy-on-write page faults; a
            # worker's queue holds seconds of its horses' spans and lines).
            queue = self._queue
            self._inherited = queue
            self._queue = collections.deque(maxlen=queue.maxlen)
            self._bsp_reset_once = Once()  # emit() re-arms through it
            self._pid = LAZY

    _classes[base] = ForkLazyBatchProcessor
    return ForkLazyBatchProcessor


@functools.cache
def _fits(base: Any) -> bool:
    """This SDK's BatchProcessor works the way the subclass assumes (read from its
    source once per process, not at every provider built)."""
    if not isinstance(base, type) or not callable(getattr(base, "_at_fork_reinit", None)):
        return False
    try:
        import inspect

        source = inspect.getsource(base)
    except (OSError, TypeError):
        return False
    return all(name in source for name in _NEEDED) and "_bsp_reset_once" in source


@contextlib.contextmanager
def lazy_after_fork() -> Iterator[None]:
    """Batch span and log processors built inside this block start no thread in a
    forked child until it emits (a no-op with an SDK of another shape).

    The swap is of a module global, under a lock, for the duration of the block: a
    processor another thread builds at that moment is lazy too, which is harmless."""
    with _lock:
        swapped: list[tuple[Any, Any]] = []
        for name in _MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            base = getattr(module, "BatchProcessor", None)
            if base is None or base in _classes.values() or not _fits(base):
                continue
            module.BatchProcessor = _lazy_class(base)  # type: ignore[attr-defined]
            swapped.append((module, base))
        try:
            yield
        finally:
            for module, base in swapped:
                module.BatchProcessor = base  # type: ignore[attr-defined]


def is_lazy(processor: Any) -> bool:
    """Whether a span or log batch processor defers its thread in forked children."""
    inner = getattr(processor, "_batch_processor", None)
    return type(inner) in _classes.values()
