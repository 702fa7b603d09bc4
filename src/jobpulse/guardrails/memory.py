"""Consecutive-attempt memory: the last failure of each job id.

In process: a bounded LRU (``Guardrails.memory_size`` job ids). With Redis
(``Guardrails.redis``), one key per job id, ``jobpulse:attempts:{job_id}``, a
JSON object kept for ``memory_ttl`` seconds, so attempts of one Celery or RQ job
that run in different processes see each other. Redis failures fall back to the
in-process memory (counted in ``jobpulse.telemetry.errors``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .. import _guard
from .config import Guardrails, redis_client

if TYPE_CHECKING:
    from .classify import Failure, Verdict

KEY_PREFIX = "jobpulse:attempts:"


@dataclass
class Entry:
    """The last recorded failure of a job id."""

    attempt: int
    run_id: str | None
    fingerprint: str
    error_type: str
    count: int  # consecutive failures with this fingerprint
    first: float  # when this streak started (unix s)
    last: float
    verdict: str
    reason: str


_lock = threading.Lock()
_local: OrderedDict[str, Entry] = OrderedDict()


def _same_run(prev: Entry, failure: Failure, run_id: str | None) -> bool:
    if run_id is not None and prev.run_id is not None:
        return prev.run_id == run_id
    return prev.attempt == failure.attempt


def _next(
    prev: Entry | None,
    failure: Failure,
    run_id: str | None,
    ruled: tuple[Verdict, str] | None,
    repeats: int,
) -> tuple[Entry, bool]:
    """The entry after this failure, and whether it changed (False: same run again)."""
    now = time.time()
    if prev is not None and _same_run(prev, failure, run_id):
        if run_id is not None and prev.run_id is None:
            prev.run_id = run_id
        return prev, False
    streak = prev is not None and prev.fingerprint == failure.fingerprint
    count = prev.count + 1 if streak and prev is not None else 1
    first = prev.first if streak and prev is not None else now
    if ruled is not None:
        verdict, reason = ruled[0].value, ruled[1]
    elif count >= repeats:
        verdict, reason = "poison", "repeated"
    else:
        verdict, reason = "unknown", "unknown"
    entry = Entry(
        attempt=failure.attempt,
        run_id=run_id,
        fingerprint=failure.fingerprint,
        error_type=failure.error_type,
        count=count,
        first=first,
        last=now,
        verdict=verdict,
        reason=reason,
    )
    return entry, True


def _local_record(
    cfg: Guardrails, key: str, failure: Failure, run_id: str | None, ruled: Any, repeats: int
) -> Entry:
    with _lock:
        prev = _local.get(key)
        entry, _changed = _next(prev, failure, run_id, ruled, repeats)
        _local[key] = entry
        _local.move_to_end(key)
        while len(_local) > max(1, cfg.memory_size):
            _local.popitem(last=False)
        return entry


def record(
    cfg: Guardrails, failure: Failure, run_id: str | None, ruled: tuple[Verdict, str] | None
) -> Entry:
    """Record one failure and return its entry (the stored one if this run was seen)."""
    repeats = cfg.repeats_for(failure.job_name)
    key = failure.job_id or f"run:{run_id}"
    client = redis_client(cfg)
    if client is not None:
        try:
            from ..autodeps import internal

            with internal():
                raw = client.get(KEY_PREFIX + key)
                prev = Entry(**json.loads(raw)) if raw else None
                entry, changed = _next(prev, failure, run_id, ruled, repeats)
                if changed:
                    client.set(
                        KEY_PREFIX + key, json.dumps(asdict(entry)), ex=int(cfg.memory_ttl) or 1
                    )
            return entry
        except Exception as exc:  # noqa: BLE001 - fall back to the process's memory
            _guard.report("guardrails.memory", exc)
    return _local_record(cfg, key, failure, run_id, ruled, repeats)


def forget(job_id: str, cfg: Guardrails | None = None, client: Any = None) -> None:
    """Drop a job id's history (after a release from quarantine: a fresh start)."""
    with _lock:
        _local.pop(job_id, None)
    client = client if client is not None else (redis_client(cfg) if cfg is not None else None)
    if client is not None:
        from ..autodeps import internal

        with internal():
            client.delete(KEY_PREFIX + job_id)


def clear_local() -> None:
    """Forget every in-process entry (tests)."""
    with _lock:
        _local.clear()
