"""The client hooks: where each library's call starts, and its effective timeout.

Each hook patches one method so the patch runs *inside* the official
instrumentation's CLIENT span (urllib3's ``urlopen`` is called inside requests'
``Session.send``; httpcore's pool inside httpx's transport; redis' per-command
send-and-parse inside ``execute_command``), and outside a run it only calls
the original.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Call, active

if TYPE_CHECKING:
    from .._runtime import Runtime


class Patch:
    """One replaced attribute, restored by :meth:`uninstall` if still ours."""

    def __init__(self, owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
        self.owner, self.attr = owner, attr
        self.own = attr in owner.__dict__  # else inherited (socket.socket.connect)
        self.original = getattr(owner, attr)
        self.replacement = make(self.original)
        self.replacement.__wrapped__ = self.original
        setattr(owner, attr, self.replacement)

    def uninstall(self) -> None:
        if self.owner.__dict__.get(self.attr) is self.replacement:
            if self.own:
                setattr(self.owner, self.attr, self.original)
            else:
                delattr(self.owner, self.attr)


class Undo:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def uninstall(self) -> None:
        self.fn()


def _sum(connect: float | None, read: float | None) -> float | None:
    if connect is None or read is None:
        return None
    return float(connect) + float(read)


# -- requests: the official instrumentation, for its CLIENT span --------------------
def requests_official(rt: Runtime) -> Any:
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:
        return None
    instrumentor = RequestsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return None
    instrumentor.instrument(
        tracer_provider=rt.providers.tracer_provider,
        meter_provider=rt.providers.meter_provider,
    )
    return Undo(instrumentor.uninstrument)


# -- urllib3 (and so requests) ----------------------------------------------------
def urllib3_timeout(pool: Any, timeout: Any) -> float | None:
    from urllib3.util.timeout import Timeout

    t = pool._get_timeout(timeout)
    total = Timeout.resolve_default_timeout(t.total)
    if total is not None:
        return float(total)
    connect = Timeout.resolve_default_timeout(t.connect_timeout)
    read = Timeout.resolve_default_timeout(t.read_timeout)
    return _sum(connect, read)


def urllib3_hook(rt: Runtime) -> Any:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.util.timeout import _DEFAULT_TIMEOUT

    def make(original: Any) -> Any:
        def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if not active():
                return original(self, method, url, *args, **kwargs)
            given = kwargs.get("timeout", args[5] if len(args) > 5 else _DEFAULT_TIMEOUT)
            call = Call(f"http:{self.host}", urllib3_timeout(self, given), own_span=True)
            try:
                response = original(self, method, url, *args, **kwargs)
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)
            return response

        return urlopen

    return Patch(HTTPConnectionPool, "urlopen", make)


# -- httpx (through httpcore) -------------------------------------------------------
def httpcore_timeout(request: Any) -> float | None:
    timeouts = (getattr(request, "extensions", None) or {}).get("timeout") or {}
    return _sum(timeouts.get("connect"), timeouts.get("read"))


def _httpcore_name(request: Any) -> str:
    host = request.url.host
    return "http:" + (host.decode("ascii", "replace") if isinstance(host, bytes) else str(host))


class _Patches:
    def __init__(self, *patches: Any) -> None:
        self.patches = patches

    def uninstall(self) -> None:
        for p in self.patches:
            p.uninstall()


def httpcore_hook(rt: Runtime) -> Any:
    import httpcore

    def make_sync(original: Any) -> Any:
        def handle_request(self: Any, request: Any) -> Any:
            if not active():
                return original(self, request)
            call = Call(_httpcore_name(request), httpcore_timeout(request), own_span=True)
            try:
                response = original(self, request)
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)
            return response

        return handle_request

    def make_async(original: Any) -> Any:
        async def handle_async_request(self: Any, request: Any) -> Any:
            if not active():
                return await original(self, request)
            call = Call(_httpcore_name(request), httpcore_timeout(request), own_span=True)
            try:
                response = await original(self, request)
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)
            return response

        return handle_async_request

    return _Patches(
        Patch(httpcore.ConnectionPool, "handle_request", make_sync),
        Patch(httpcore.AsyncConnectionPool, "handle_async_request", make_async),
    )


# -- redis-py --------------------------------------------------------------------------
def redis_name(conn: Any) -> str:
    host = getattr(conn, "host", None)
    return f"redis:{host}" if host else "redis:unix"


def redis_hook(rt: Runtime) -> Any:
    from redis.client import Redis

    def make(original: Any) -> Any:
        def send_and_parse(self: Any, conn: Any, command_name: Any, *args: Any, **kw: Any) -> Any:
            if not active():
                return original(self, conn, command_name, *args, **kw)
            timeout = getattr(conn, "socket_timeout", None)
            call = Call(redis_name(conn), timeout, own_span=False)
            try:
                result = original(self, conn, command_name, *args, **kw)
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)
            return result

        return send_and_parse

    return Patch(Redis, "_send_command_parse_response", make)


# -- raw sockets ---------------------------------------------------------------------
def socket_hook(rt: Runtime) -> Any:
    inet = (socket.AF_INET, socket.AF_INET6)

    def make(original: Any) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if not active() or self.family not in inet:
                return original(self, address)
            timeout = self.gettimeout()
            if timeout == 0.0:  # non-blocking (event loops): never waits here
                return original(self, address)
            call = Call(f"tcp:{address[0]}:{address[1]}", timeout, own_span=False)
            try:
                result = original(self, address)
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)
            return result

        return connect

    return Patch(socket.socket, "connect", make)


#: (module whose import installs the hook, hook)
HOOKS: tuple[tuple[str, Callable[[Runtime], Any]], ...] = (
    ("socket", socket_hook),
    ("urllib3", urllib3_hook),
    ("requests", requests_official),
    ("httpcore", httpcore_hook),
    ("redis", redis_hook),
)
