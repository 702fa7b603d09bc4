"""Which Celery process this is, and what the worker said before forking its pool.

The worker's main process records ``worker_init`` facts here; prefork children
inherit them with the fork. A process is a *pool child* when a worker was
initialised and this is not that worker's pid: its runs are counted by the
main process, which outlives it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class WorkerInfo:
    pid: int | None = None  # the worker's main process
    hostname: str | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # kB, as billiard measures it
    time_limit: float | None = None  # the worker's defaults (``--time-limit``)
    soft_time_limit: float | None = None
    tasks_done: int = 0  # in this pool child
    unflushed: bool = False  # a run ended in this child since its last flush


WORKER = WorkerInfo()

#: the adapter is installed; False after uninstall(): Request classes built while it
#: was on stay, inert
ACTIVE = False

#: this process's pid, kept current across forks (read on every task)
PID = os.getpid()


def _forked() -> None:
    global PID
    PID = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    return PID


def in_pool_child() -> bool:
    """True in a prefork pool child (its parent, the main worker process, counts its runs)."""
    main = WORKER.pid
    return main is not None and main != PID
