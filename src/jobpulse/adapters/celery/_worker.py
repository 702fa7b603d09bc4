"""The worker's lifecycle: what the pool children inherit, their identity, flushes, capacity.

* ``worker_init`` (main process, before the pool forks): the worker's name,
  recycling limits and default time limits, for the children to inherit; the
  Request hooks (:mod:`._requests`) go in.
* ``worker_process_init`` (a prefork child): a stable ``service.instance.id``,
  the node name and pool index (``celery@host/1``).
* ``worker_process_shutdown`` (a child leaving, recycled or stopped) and
  ``worker_shutdown`` (the main process, warm or cold): flush, bounded by
  ``flush_timeout``.
* ``worker_ready``: ``jobpulse.worker.capacity`` per consumed queue.
"""

from __future__ import annotations

import os
from typing import Any

from ... import _guard, _otel, _runtime
from . import _coexist, _consumer, _message, _process, _requests
from ._process import WORKER, in_pool_child

_capacity_keys: list[tuple[str, str]] = []


# -- worker lifecycle ------------------------------------------------------------------
def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Main process, before the pool forks: what the children need to know."""
    if not _process.ACTIVE or sender is None:
        return
    with _guard.never_raise("adapter.celery.worker"):
        WORKER.pid = os.getpid()
        WORKER.hostname = getattr(sender, "hostname", None)
        WORKER.max_tasks_per_child = getattr(sender, "max_tasks_per_child", None) or None
        WORKER.max_memory_per_child = getattr(sender, "max_memory_per_child", None) or None
        WORKER.time_limit = getattr(sender, "time_limit", None)
        WORKER.soft_time_limit = getattr(sender, "soft_time_limit", None)
        _consumer.clear()  # cached budgets knew no worker time limits
        _requests.patch_strategy()
        keep_order()


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Worker capacity per consumed queue (``jobpulse.worker.capacity``)."""
    if not _process.ACTIVE or sender is None:
        return
    with _guard.never_raise("adapter.celery.worker"):
        worker = getattr(sender, "controller", None)
        concurrency = getattr(worker, "concurrency", None)
        autoscaler = getattr(worker, "autoscaler", None)
        if autoscaler is not None:
            concurrency = getattr(autoscaler, "max_concurrency", concurrency)
        if not isinstance(concurrency, int) or concurrency <= 0:
            return
        app = sender.app
        queues = list(app.amqp.queues.consume_from or ()) or [app.conf.task_default_queue]
        registry = _runtime.registry()
        for queue in queues:
            key = (str(queue), _message.SYSTEM)
            registry.capacity[key] = concurrency
            _capacity_keys.append(key)


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """Main process, warm or cold shutdown: export what is buffered, bounded."""
    rt = _runtime.get()
    if not _process.ACTIVE or rt is None:
        return
    with _guard.never_raise("adapter.celery.worker"):
        drop_capacity()
        rt.flush(rt.settings.flush_timeout)


def drop_capacity() -> None:
    registry = _runtime.registry()
    while _capacity_keys:
        registry.capacity.pop(_capacity_keys.pop(), None)


def on_process_init(sender: Any = None, **_: Any) -> None:
    """A prefork child starts: a stable ``service.instance.id`` (node name/pool index)."""
    rt = _runtime.get()
    if not _process.ACTIVE or rt is None or not in_pool_child():
        return
    with _guard.never_raise("adapter.celery.worker"):
        from billiard.process import current_process

        index = getattr(current_process(), "index", None)
        node = WORKER.hostname or str(sender or "celery")
        _otel.set_instance_id(rt.providers, node if index is None else f"{node}/{index}")
        WORKER.tasks_done = 0
        WORKER.unflushed = False
        keep_order()


def on_process_shutdown(**_: Any) -> None:
    """A prefork child exits (recycled, or the pool shrinks/stops): flush, bounded."""
    if _process.ACTIVE and in_pool_child():
        _consumer.flush_child()


def keep_order() -> None:
    if _coexist.contrib_active():
        from . import POSTRUN_UID, PRERUN_UID

        _coexist.keep_order(PRERUN_UID, POSTRUN_UID)
