"""``jobpulse.once(key)``: a side effect done at most once per key, and recoverably.

::

    @jobpulse.once("invoice-mail:{invoice_id}", ttl=7 * 86400)
    def send_invoice_mail(invoice_id: int) -> None: ...

    with jobpulse.once(f"charge:{order.id}") as claim:
        if claim:                       # False: an earlier run already did it
            charge(order)

A key is in one of three states (docs/guardrails.md has the full table):

- absent: the first run claims it (``pending``, with an owner token and a lease)
  and runs the block. The block returning marks the key ``done``; the block
  raising an ``Exception`` releases the claim (the side effect is taken not to
  have happened), so a later run tries again.
- ``done``: later runs skip the block and record that they did.
- ``pending``: another run is inside the block. While its lease lasts, a later run
  gets :class:`OnceInProgress` (a transient failure: retry later). Once the lease
  has expired the owner is presumed dead *somewhere inside the block*: progress is
  unknown. With ``recover=`` the later run asks ``recover(key)`` "was it done?":
  True marks the key done and skips; False takes the claim over and runs the
  block. Without ``recover`` it raises :class:`OnceUnknownProgress` and the run
  ends with ``jobpulse.action = escalate``: it never silently redoes it. An
  operator resolves it with :func:`resolve`, or the key expires after ``ttl``.

An interruption that is not an ``Exception`` (task cancellation, ``SystemExit``,
``KeyboardInterrupt``) inside the block is treated like a crash: the key stays
pending. Every key, whatever its state, expires ``ttl`` seconds after it was
first claimed; after that the side effect may run again.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .. import _guard
from .. import _names as n
from .._context import current
from .._textsafe import safe_str

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(n.LOGGER_NAME)
PREFIX = "jobpulse:once:"
DEFAULT_TTL = 86400.0
DEFAULT_LEASE = 600.0


class OnceInProgress(RuntimeError):
    """Another live run holds this key's claim: retry later (classified transient)."""

    def __init__(self, key: str, holder: str | None) -> None:
        self.key, self.holder = key, holder
        super().__init__(f"once({key!r}): another run ({holder or 'unknown'}) is doing it now")


class OnceUnknownProgress(RuntimeError):
    """The run that claimed this key died inside the block: whether the side effect
    happened is unknown. The run ends with action ``escalate``."""

    def __init__(self, key: str, holder: str | None, claimed_at: float | None) -> None:
        self.key, self.holder, self.claimed_at = key, holder, claimed_at
        when = (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claimed_at))
            if claimed_at
            else "an unknown time"
        )
        super().__init__(
            f"once({key!r}): run {holder or 'unknown'} claimed it at {when} and never finished "
            "(its lease expired): the side effect may or may not have happened. Check, then "
            "jobpulse.guardrails.once.resolve(key, done=True|False), or pass recover=..."
        )


# -- stores ----------------------------------------------------------------------
class OnceStore(Protocol):
    """Atomic state transitions of a once key (all times are the store's clock)."""

    def claim(
        self, key: str, token: str, ttl: float, lease: float, run_id: str, job: str
    ) -> tuple[str, dict[str, Any]]: ...
    def takeover(
        self, key: str, old: str, token: str, lease: float, run_id: str, job: str
    ) -> bool: ...
    def complete(self, key: str, token: str) -> bool: ...
    def release(self, key: str, token: str) -> bool: ...
    def resolve(self, key: str, done: bool) -> bool: ...
    def get(self, key: str) -> dict[str, Any] | None: ...


class MemoryOnceStore:
    """One process's keys (tests, single-process workers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}

    def _live(self, key: str, now: float) -> dict[str, Any] | None:
        rec = self._keys.get(key)
        if rec is not None and rec["expires"] <= now:
            del self._keys[key]
            return None
        return rec

    def claim(
        self, key: str, token: str, ttl: float, lease: float, run_id: str, job: str
    ) -> tuple[str, dict[str, Any]]:
        with self._lock:
            now = time.time()
            rec = self._live(key, now)
            if rec is None:
                self._keys[key] = {
                    "state": "pending",
                    "token": token,
                    "lease_until": now + lease,
                    "run_id": run_id,
                    "job": job,
                    "claimed_at": now,
                    "expires": now + ttl,
                }
                return "claimed", {}
            info = dict(rec)
            if rec["state"] == "done":
                return "done", info
            return ("busy" if rec["lease_until"] > now else "expired"), info

    def takeover(self, key: str, old: str, token: str, lease: float, run_id: str, job: str) -> bool:
        with self._lock:
            now = time.time()
            rec = self._live(key, now)
            if rec is None or rec["state"] != "pending" or rec["token"] != old:
                return False
            if rec["lease_until"] > now:
                return False
            rec.update(token=token, lease_until=now + lease, run_id=run_id, job=job, claimed_at=now)
            return True

    def complete(self, key: str, token: str) -> bool:
        with self._lock:
            rec = self._live(key, time.time())
            if rec is None or rec["state"] != "pending" or rec["token"] != token:
                return False
            rec.update(state="done", done_at=time.time())
            return True

    def release(self, key: str, token: str) -> bool:
        with self._lock:
            rec = self._live(key, time.time())
            if rec is None or rec["state"] != "pending" or rec["token"] != token:
                return False
            del self._keys[key]
            return True

    def resolve(self, key: str, done: bool) -> bool:
        with self._lock:
            rec = self._live(key, time.time())
            if rec is None:
                return False
            if done:
                rec.update(state="done", done_at=time.time())
            else:
                del self._keys[key]
            return True

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._live(key, time.time())
            return None if rec is None else dict(rec)


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_CLAIM = (
    _NOW
    + """
local k = KEYS[1]
local state = redis.call('HGET', k, 'state')
if not state then
  redis.call('HSET', k, 'state', 'pending', 'token', ARGV[1], 'lease_until',
             now + tonumber(ARGV[3]), 'run_id', ARGV[4], 'job', ARGV[5], 'claimed_at', now)
  redis.call('PEXPIRE', k, ARGV[2])
  return {'claimed'}
end
local f = redis.call('HMGET', k, 'token', 'lease_until', 'run_id', 'job', 'claimed_at', 'done_at')
local status = 'done'
if state ~= 'done' then
  if tonumber(f[2]) > now then status = 'busy' else status = 'expired' end
end
return {status, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or ''}
"""
)
_TAKEOVER = (
    _NOW
    + """
local k = KEYS[1]
local f = redis.call('HMGET', k, 'state', 'token', 'lease_until')
if f[1] ~= 'pending' or f[2] ~= ARGV[1] or tonumber(f[3]) > now then return 0 end
redis.call('HSET', k, 'token', ARGV[2], 'lease_until', now + tonumber(ARGV[3]),
           'run_id', ARGV[4], 'job', ARGV[5], 'claimed_at', now)
return 1
"""
)
_COMPLETE = (
    _NOW
    + """
local k = KEYS[1]
local f = redis.call('HMGET', k, 'state', 'token')
if f[1] ~= 'pending' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', k, 'state', 'done', 'done_at', now)
return 1
"""
)
_RELEASE = """
local k = KEYS[1]
local f = redis.call('HMGET', k, 'state', 'token')
if f[1] ~= 'pending' or f[2] ~= ARGV[1] then return 0 end
redis.call('DEL', k)
return 1
"""
_RESOLVE = (
    _NOW
    + """
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('HSET', k, 'state', 'done', 'done_at', now)
else redis.call('DEL', k) end
return 1
"""
)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisOnceStore:
    """Keys ``jobpulse:once:{key}``: a hash (state, token, lease_until, run_id, job,
    claimed_at, done_at; times in ms of the Redis clock) expiring ``ttl`` after the
    first claim. Every transition is one Lua script, so it is atomic."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._scripts: dict[str, Any] = {}

    def _run(self, source: str, key: str, *args: Any) -> Any:
        from ..autodeps import internal

        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        with internal():
            return script(keys=[self.prefix + key], args=list(args))

    def claim(
        self, key: str, token: str, ttl: float, lease: float, run_id: str, job: str
    ) -> tuple[str, dict[str, Any]]:
        out = self._run(_CLAIM, key, token, int(ttl * 1000), int(lease * 1000), run_id, job)
        status = _text(out[0])
        if status == "claimed":
            return status, {}
        token_, lease_until, run, job_, claimed, done = (_text(v) for v in out[1:7])
        return status, {
            "token": token_,
            "run_id": run or None,
            "job": job_ or None,
            "lease_until": float(lease_until) / 1000 if lease_until else None,
            "claimed_at": float(claimed) / 1000 if claimed else None,
            "done_at": float(done) / 1000 if done else None,
        }

    def takeover(self, key: str, old: str, token: str, lease: float, run_id: str, job: str) -> bool:
        return bool(self._run(_TAKEOVER, key, old, token, int(lease * 1000), run_id, job))

    def complete(self, key: str, token: str) -> bool:
        return bool(self._run(_COMPLETE, key, token))

    def release(self, key: str, token: str) -> bool:
        return bool(self._run(_RELEASE, key, token))

    def resolve(self, key: str, done: bool) -> bool:
        return bool(self._run(_RESOLVE, key, "1" if done else "0"))

    def get(self, key: str) -> dict[str, Any] | None:
        from ..autodeps import internal

        with internal():
            raw = self.client.hgetall(self.prefix + key)
        return {_text(k): _text(v) for k, v in raw.items()} or None


_memory = MemoryOnceStore()


def default_store() -> OnceStore:
    """Redis when guardrails have one (``Guardrails.redis`` / ``JOBPULSE_REDIS_URL``),
    else this process's memory."""
    from .config import redis_client

    client = redis_client()
    return RedisOnceStore(client) if client is not None else _memory


def resolve(key: str, *, done: bool, store: OnceStore | None = None) -> bool:
    """Operator's answer for a key with unknown progress: ``done=True`` marks the side
    effect done (later runs skip it), ``done=False`` clears the key (the next run
    does it). Returns False when the key does not exist. Logged."""
    ok = (store or default_store()).resolve(key, done)
    _log.warning(
        "once: key %r resolved by an operator as %s",
        key,
        "done" if done else "not done",
        extra={n.ONCE_KEY: key[:256]},
    )
    return ok


# -- the claim ---------------------------------------------------------------------
def _record(key: str, result: str, level: int, message: str) -> None:
    """The ``jobpulse.once`` span event on the run span and one log line."""
    with _guard.never_raise("guardrails.once"):
        from .. import _lifecycle

        attrs = {n.ONCE_KEY: key[:256], n.ONCE_RESULT: result}
        run = current.get()
        if run is not None:
            if run.span is not None:
                run.span.add_event(n.EVENT_ONCE, attrs)
            if _log.isEnabledFor(level):
                _lifecycle.emit_log(run, level, message, attrs)
        elif _log.isEnabledFor(level):
            _log.log(level, message, extra=attrs)


class OnceClaim:
    """What ``with once(...) as claim`` gives: truthy when this run must do the side
    effect. ``result``: ``performed``, ``failed``, ``skipped``, ``recovered`` (after
    the block), ``claimed`` (inside it)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.should_run = False
        self.result = "claimed"
        self.token: str | None = None
        self.previous: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return self.should_run

    def __repr__(self) -> str:
        return f"<OnceClaim {self.key!r} should_run={self.should_run} result={self.result}>"


class once:
    """At most once per ``key`` (see the module docs for the exact semantics).

    key: a string; as a decorator, a ``str.format`` template over the function's
        arguments (``"mail:{user_id}"``) or a callable taking the same arguments.
    ttl: seconds the key is remembered after it is first claimed (default one day).
    lease: seconds a claim is trusted before its owner is presumed dead (default:
        the run's ``max_runtime`` if known, else 600; at most ``ttl``).
    recover: ``recover(key) -> bool`` answers "was it done?" for a key whose owner
        died inside the block.
    store: a once store (default: Redis when configured, else in-process memory).

    As a decorator, a skipped call returns None.
    """

    def __init__(
        self,
        key: str | Callable[..., str],
        *,
        ttl: float = DEFAULT_TTL,
        lease: float | None = None,
        recover: Callable[[str], bool] | None = None,
        store: OnceStore | None = None,
    ) -> None:
        if not (isinstance(key, str) and key) and not callable(key):
            raise ValueError(f"once(key=...) must be a non-empty string or a callable, got {key!r}")
        for name, value in (("ttl", ttl), ("lease", lease)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(
                    f"once({name}=...) must be a positive number of seconds, got {value!r}"
                )
        self.key = key
        self.ttl = float(ttl)
        self.lease = None if lease is None else float(lease)
        self.recover = recover
        self.store = store
        self._claims: list[OnceClaim] = []

    # -- context manager ------------------------------------------------------
    def __enter__(self) -> OnceClaim:
        if not isinstance(self.key, str):
            raise TypeError("once(callable key) is for decorators; give a string key to `with`")
        claim = self._claim(self.key)
        self._claims.append(claim)
        return claim

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        self._finish(self._claims.pop(), exc)

    async def __aenter__(self) -> OnceClaim:
        return self.__enter__()

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(et, exc, tb)

    # -- decorator --------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        key = self.key
        signature = inspect.signature(fn)

        def key_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if callable(key):
                return str(key(*args, **kwargs))
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return key.format(**bound.arguments)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                claim = self._claim(key_for(args, kwargs))
                if not claim:
                    return None
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self._finish(claim, exc)
                    raise
                self._finish(claim, None)
                return result

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            claim = self._claim(key_for(args, kwargs))
            if not claim:
                return None
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(claim, exc)
                raise
            self._finish(claim, None)
            return result

        return run_sync  # type: ignore[return-value]

    # -- the state machine ------------------------------------------------------------
    def _lease(self) -> float:
        if self.lease is not None:
            return min(self.lease, self.ttl)
        run = current.get()
        budget = run.budget.max_runtime if run is not None else None
        return min(float(budget) if budget else DEFAULT_LEASE, self.ttl)

    def _claim(self, key: str) -> OnceClaim:
        store = self.store or default_store()
        run = current.get()
        run_id = run.run_id if run is not None else f"pid:{_pid()}"
        job = run.job_name if run is not None else ""
        claim = OnceClaim(key)
        token = uuid.uuid4().hex
        lease = self._lease()
        status, info = store.claim(key, token, self.ttl, lease, run_id, job)
        claim.previous = info
        if status == "claimed":
            claim.should_run, claim.token = True, token
            return claim
        if status == "done":
            claim.result = "skipped"
            _record(
                key,
                "skipped",
                logging.INFO,
                f"once: {key!r} already done by run {info.get('run_id') or '?'}; skipped",
            )
            return claim
        if status == "busy":
            _record(
                key,
                "in_progress",
                logging.WARNING,
                f"once: {key!r} is being done by run {info.get('run_id') or '?'} now",
            )
            raise OnceInProgress(key, info.get("run_id"))
        # expired: the owner died inside the block; progress unknown.
        if self.recover is None:
            _record(
                key,
                "unknown",
                logging.ERROR,
                f"once: {key!r} was claimed by run {info.get('run_id') or '?'} which never "
                "finished; progress unknown, escalating (no recover= given)",
            )
            raise OnceUnknownProgress(key, info.get("run_id"), info.get("claimed_at"))
        was_done = bool(self.recover(key))
        old = str(info.get("token") or "")
        if was_done:
            store.resolve(key, True)
            claim.result = "recovered"
            _record(
                key,
                "recovered",
                logging.WARNING,
                f"once: {key!r} had an unfinished claim by run {info.get('run_id') or '?'}; "
                "recover() says it was done: marked done, skipped",
            )
            return claim
        if not store.takeover(key, old, token, lease, run_id, job):
            # someone else resolved or took it over between our two calls: start again
            return self._claim(key)
        _record(
            key,
            "taken_over",
            logging.WARNING,
            f"once: {key!r} had an unfinished claim by run {info.get('run_id') or '?'}; "
            "recover() says it was not done: doing it now",
        )
        claim.should_run, claim.token = True, token
        return claim

    def _finish(self, claim: OnceClaim, exc: BaseException | None) -> None:
        if not claim.should_run or claim.token is None:
            return
        store = self.store or default_store()
        if exc is None:
            if store.complete(claim.key, claim.token):
                claim.result = "performed"
                _record(claim.key, "performed", logging.INFO, f"once: {claim.key!r} done")
            else:
                claim.result = "performed"
                _record(
                    claim.key,
                    "performed",
                    logging.ERROR,
                    f"once: {claim.key!r} finished after its claim was resolved or taken "
                    "over by another run: the side effect may have happened twice",
                )
        elif isinstance(exc, Exception):
            claim.result = "failed"
            store.release(claim.key, claim.token)
            _record(
                claim.key,
                "failed",
                logging.INFO,
                f"once: {claim.key!r} raised {type(exc).__name__}: {safe_str(exc, 200)}; "
                "claim released, a later run may do it",
            )
        # an interruption (cancellation, exit) is a crash: the key stays pending


def _pid() -> int:
    import os

    return os.getpid()
