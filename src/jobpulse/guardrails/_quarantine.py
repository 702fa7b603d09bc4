"""The quarantine: poison runs set aside for a human, with an operator payload.

Stores: :class:`RedisStore` (keys under ``jobpulse:quarantine:``) and
:class:`MemoryStore` (in-process jobs, tests). The payload never holds the
job's arguments unless ``instrument(record_args=...)`` allows them by name; the
``release`` section (what is needed to re-enqueue: a Celery task's name, queue
and body, an RQ job's id) is kept in the store only, never in telemetry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol

from .. import _guard
from .. import _names as n
from .._textsafe import attribute_value
from .classify import Classification, build_failure, classify
from .config import Guardrails, active, redis_client

if TYPE_CHECKING:
    from .._run import JobRun

_log = logging.getLogger(n.LOGGER_NAME)

PREFIX = "jobpulse:quarantine:"
IN_PROCESS_SYSTEMS = frozenset({"function", "asyncio"})
QUARANTINED, RELEASED = "quarantined", "released"


@dataclass
class Payload:
    """What an operator needs to decide about one quarantined job.

    ``id`` is the job id (stable across attempts, so one job is one entry).
    ``release`` is the store-only section used by ``jobpulse quarantine release``.
    """

    id: str
    job: str
    system: str
    queue: str
    job_id: str
    run_id: str
    attempts: int
    error_type: str
    error_message: str
    error_fingerprint: str
    input_fingerprint: str | None
    first_seen: float
    last_seen: float
    step: str | None
    trace_id: str | None
    reason: str
    suggested_action: str
    args: dict[str, Any] | None = None
    status: str = QUARANTINED
    quarantined_at: float = field(default_factory=time.time)
    release: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """Every field but the store-only ``release`` section (which is summarised)."""
        out = asdict(self)
        release = out.pop("release")
        out["release"] = _release_summary(release)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Payload:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _release_summary(release: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not release:
        return None
    return {
        k: v
        for k, v in release.items()
        if k not in ("args", "kwargs", "body", "headers", "options")
    } | {"message_stored": any(k in release for k in ("args", "kwargs", "body"))}


# -- stores --------------------------------------------------------------------
class QuarantineStore(Protocol):
    """Where quarantined payloads live."""

    def put(self, payload: Payload) -> Payload: ...
    def get(self, qid: str) -> Payload | None: ...
    def entries(self, limit: int = 100) -> list[Payload]: ...
    def save(self, payload: Payload) -> None: ...
    def delete(self, qid: str) -> bool: ...
    def log(self, action: str, payload: Payload, **detail: Any) -> None: ...
    def history(self, limit: int = 100) -> list[dict[str, Any]]: ...


def _merge(old: Payload | None, new: Payload) -> Payload:
    if old is None or old.status != QUARANTINED:
        return new
    return replace(
        new,
        first_seen=min(old.first_seen, new.first_seen),
        quarantined_at=old.quarantined_at,
        release=new.release or old.release,
    )


class MemoryStore:
    """In-process store: for ``@jobpulse.job`` functions and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Payload] = {}
        self._log: list[dict[str, Any]] = []

    def put(self, payload: Payload) -> Payload:
        with self._lock:
            merged = _merge(self._items.get(payload.id), payload)
            self._items[payload.id] = merged
            return merged

    def get(self, qid: str) -> Payload | None:
        with self._lock:
            return self._items.get(qid)

    def entries(self, limit: int = 100) -> list[Payload]:
        with self._lock:
            items = sorted(self._items.values(), key=lambda p: p.quarantined_at, reverse=True)
        return items[:limit]

    def save(self, payload: Payload) -> None:
        with self._lock:
            self._items[payload.id] = payload

    def delete(self, qid: str) -> bool:
        with self._lock:
            return self._items.pop(qid, None) is not None

    def log(self, action: str, payload: Payload, **detail: Any) -> None:
        with self._lock:
            self._log.insert(0, _log_entry(action, payload, detail))
            del self._log[1000:]

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log[:limit])


def _log_entry(action: str, payload: Payload, detail: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ts": time.time(),
        "action": action,
        "id": payload.id,
        "job": payload.job,
        "system": payload.system,
        **detail,
    }


class RedisStore:
    """``jobpulse:quarantine:item:{id}`` (hash: ``payload`` JSON, ``status``),
    ``jobpulse:quarantine:index`` (sorted set by quarantine time) and
    ``jobpulse:quarantine:log`` (list of JSON action records, newest first, 1000 kept)."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def _item(self, qid: str) -> str:
        return f"{self.prefix}item:{qid}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from ..autodeps import internal

        with internal():
            return fn(*args, **kwargs)

    def put(self, payload: Payload) -> Payload:
        merged = _merge(self.get(payload.id), payload)
        self.save(merged)
        return merged

    def save(self, payload: Payload) -> None:
        def write() -> None:
            pipe = self.client.pipeline()
            pipe.hset(
                self._item(payload.id),
                mapping={"payload": payload.to_json(), "status": payload.status},
            )
            pipe.zadd(f"{self.prefix}index", {payload.id: payload.quarantined_at})
            pipe.execute()

        self._call(write)

    def get(self, qid: str) -> Payload | None:
        raw = self._call(self.client.hget, self._item(qid), "payload")
        return Payload.from_json(raw) if raw else None

    def entries(self, limit: int = 100) -> list[Payload]:
        ids = self._call(self.client.zrevrange, f"{self.prefix}index", 0, max(0, limit - 1))
        out = []
        for raw_id in ids:
            qid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            payload = self.get(qid)
            if payload is not None:
                out.append(payload)
        return out

    def delete(self, qid: str) -> bool:
        def remove() -> bool:
            pipe = self.client.pipeline()
            pipe.delete(self._item(qid))
            pipe.zrem(f"{self.prefix}index", qid)
            return bool(pipe.execute()[0])

        return bool(self._call(remove))

    def log(self, action: str, payload: Payload, **detail: Any) -> None:
        def write() -> None:
            pipe = self.client.pipeline()
            pipe.lpush(
                f"{self.prefix}log", json.dumps(_log_entry(action, payload, detail), default=str)
            )
            pipe.ltrim(f"{self.prefix}log", 0, 999)
            pipe.execute()

        self._call(write)

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = self._call(self.client.lrange, f"{self.prefix}log", 0, max(0, limit - 1))
        return [json.loads(r) for r in raw]


_memory_store = MemoryStore()


def store_for(cfg: Guardrails | None = None) -> QuarantineStore:
    """The configured store: ``Guardrails.store``, else Redis when configured, else memory."""
    cfg = active() if cfg is None else cfg
    if cfg.store is not None:
        return cfg.store  # type: ignore[no-any-return]
    client = redis_client(cfg)
    return RedisStore(client) if client is not None else _memory_store


def memory_store() -> MemoryStore:
    """The process's in-memory store (used when no Redis is configured)."""
    return _memory_store


# -- payloads ------------------------------------------------------------------
def input_fingerprint(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str | None:
    """A hash of the job's arguments (never the arguments themselves)."""
    if args is None and kwargs is None:
        return None
    try:
        text = json.dumps([list(args or ()), dict(kwargs or {})], sort_keys=True, default=repr)
    except Exception:  # noqa: BLE001 - unserialisable or unsortable input
        text = repr((args, sorted((kwargs or {}).items(), key=lambda kv: str(kv[0]))))
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def allowed_args(
    job_name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    arg_names: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Only the arguments ``instrument(record_args={job: [names]})`` allows, as safe text."""
    from .. import _runtime

    rt = _runtime.get()
    allowed = rt.settings.args_allowed(job_name) if rt is not None else ()
    if not allowed:
        return None
    named: dict[str, Any] = dict(zip(arg_names or (), args or (), strict=False))
    named.update(kwargs or {})
    out = {k: attribute_value(v) for k, v in named.items() if k in allowed}
    return out or None


def _suggestion(c: Classification, job_id: str) -> str:
    fix = f"then `jobpulse quarantine release {job_id}`; `drop` it if the input itself is bad"
    if c.reason == "repeated":
        if c.error_type == "lost":
            return (
                f"the process running it died on {c.repeats} consecutive attempts "
                f"(out of memory? a crash in native code?): check this input's size and "
                f"the worker's limits, {fix}"
            )
        return (
            f"failed {c.repeats} consecutive attempts with the same {c.error_type}: "
            f"inspect the input and fix the cause, {fix}"
        )
    if c.reason == "http_status":
        return f"the remote side rejected the request ({c.error_type}): fix the request, {fix}"
    if c.reason.startswith("rule:"):
        return f"classified as poison by {c.reason[5:]}: review the error, {fix}"
    return f"{c.error_type} is not retryable (invalid input or missing permission): fix it, {fix}"


def make_payload(
    c: Classification,
    *,
    job_name: str,
    system: str,
    queue: str,
    job_id: str,
    run_id: str,
    attempt: int,
    step: str | None,
    trace_id: str | None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    arg_names: Sequence[str] | None = None,
    release: Mapping[str, Any] | None = None,
) -> Payload:
    return Payload(
        id=job_id,
        job=job_name,
        system=system,
        queue=queue,
        job_id=job_id,
        run_id=run_id,
        attempts=attempt,
        error_type=c.error_type,
        error_message=c.message,
        error_fingerprint=c.fingerprint,
        input_fingerprint=input_fingerprint(args, kwargs),
        first_seen=c.first_seen,
        last_seen=c.last_seen,
        step=step,
        trace_id=trace_id,
        reason=c.reason,
        suggested_action=_suggestion(c, job_id),
        args=allowed_args(job_name, args, kwargs, arg_names),
        release=dict(release) if release else None,
    )


def trace_id_of(run: JobRun | None) -> str | None:
    from opentelemetry import trace

    span = run.span if run is not None else trace.get_current_span()
    ctx = span.get_span_context() if span is not None else None
    return format(ctx.trace_id, "032x") if ctx is not None and ctx.is_valid else None


# runs an adapter took charge of (should_quarantine returned a payload): the end-of-run
# hook must not store them again.
_handled: dict[str, None] = {}
_handled_lock = threading.Lock()


def _mark_handled(run_id: str) -> None:
    with _handled_lock:
        _handled[run_id] = None
        while len(_handled) > 4096:
            _handled.pop(next(iter(_handled)))


def handled(run_id: str) -> bool:
    with _handled_lock:
        return run_id in _handled


def enforced(cfg: Guardrails, run: JobRun | None, enforce: bool | None = None) -> bool:
    if enforce is not None:
        return enforce
    if cfg.enforce is not None:
        return cfg.enforce
    if run is not None:
        return run.enforce
    from .. import _runtime

    rt = _runtime.get()
    return bool(rt is not None and rt.settings.enforce)


def should_quarantine(
    run: JobRun | None,
    exc: BaseException | None,
    *,
    job_name: str | None = None,
    system: str | None = None,
    queue: str | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    attempt: int | None = None,
    outcome: str = "error",
    error_type: str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    arg_names: Sequence[str] | None = None,
    release: Mapping[str, Any] | None = None,
    enforce: bool | None = None,
) -> Payload | None:
    """For adapters, in the failing run, before the framework decides to retry.

    Returns the operator payload when enforcement is on and the failure is poison
    (the caller then stops retries, calls :func:`quarantine` and ends the run with
    action ``quarantine``); None otherwise. Fields default to the run's. The
    classification is remembered, so ``end_run``/``count_run`` for the same run
    agree. Never raises.
    """
    with _guard.never_raise("guardrails.quarantine"):
        cfg = active()
        if not cfg.classify or not enforced(cfg, run, enforce):
            return None
        job_name = job_name or (run.job_name if run is not None else None)
        job_id = job_id or (run.job_id if run is not None else None)
        if not job_name or not job_id:
            return None
        system = system or (run.system if run is not None else "")
        run_id = run_id or (run.run_id if run is not None else None) or ""
        attempt = attempt or (run.attempt if run is not None else 1)
        failure = build_failure(
            job_name=job_name,
            system=system,
            job_id=job_id,
            attempt=attempt,
            outcome=outcome,
            exc=exc,
            error_type=error_type,
        )
        c = classify(failure, cfg, run_id=run_id or None)
        if not c.poison:
            return None
        from ._notes import failed_step

        step = failed_step(exc) or (run.step if run is not None else None)
        payload = make_payload(
            c,
            job_name=job_name,
            system=system,
            queue=queue if queue is not None else (run.queue if run is not None else ""),
            job_id=job_id,
            run_id=run_id,
            attempt=attempt,
            step=step,
            trace_id=trace_id_of(run),
            args=args,
            kwargs=kwargs,
            arg_names=arg_names,
            release=release,
        )
        if run_id:
            _mark_handled(run_id)
        return payload
    return None


def quarantine(payload: Payload, store: QuarantineStore | None = None) -> Payload:
    """Set a payload aside in the store (merging with an earlier entry for the job id)
    and log it. Returns what was stored. Storage failures are counted, never raised."""
    with _guard.never_raise("guardrails.quarantine"):
        store = store_for() if store is None else store
        payload = store.put(payload)
        store.log("quarantine", payload, run_id=payload.run_id, reason=payload.reason)
        _log.warning(
            "job quarantined: %s %s failed with %s (%s); %s",
            payload.job,
            payload.job_id,
            payload.error_type,
            payload.reason,
            payload.suggested_action,
            extra={
                n.JOB_NAME: payload.job,
                n.JOB_ID: payload.job_id,
                n.RUN_ID: payload.run_id,
                n.ATTEMPT: payload.attempts,
                n.ACTION: "quarantine",
                n.ERROR_TYPE: payload.error_type,
            },
        )
    return payload
