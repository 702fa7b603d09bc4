"""OTLP span and log batches written straight to protobuf bytes, the SDK's bytes.

The SDK's OTLP/HTTP exporters build a protobuf object for every span,
attribute, event, link and log record of a batch, then serialize the tree:
about 100 us a run span (70 with :mod:`._encoding`'s cache) and 50 us a log
line on a 2-core VM, paid by the export thread of every process that runs jobs
(a prefork child, an RQ worker), on the cores the jobs need. These writers emit
the same wire format directly (35 and 20 us): each item is a concatenation of
tagged fields, jobpulse's repeating attributes are kept as ready bytes, and the
resource and instrumentation scope (the same for every item of a process) are
encoded once, by the SDK.

The output is byte for byte what the SDK's ``encode_spans``/``encode_logs``
serialize to (``tests/unit/test_wire.py`` compares them for every shape of
span and record the SDK makes). Values of other types (sequences, mappings,
subclasses of the plain types) are encoded by the SDK's own function; a batch
whose outcome the SDK decides (see :class:`Delegate`) or that a writer fails on
is encoded by the SDK's encoder, so an odd item costs time, never data. The
writers are installed by :func:`jobpulse._encoding.install` in the OTLP/HTTP
exporters of the process (``fast_export=False`` leaves them alone) and removed
by ``uninstrument()``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _encoding

_INT64 = 1 << 63
_INT32 = 1 << 31
_MASK64 = (1 << 64) - 1
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
#: SpanFlags: the parent's is-remote bit is known, and set
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_KINDS = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}  # SpanKind.value -> the proto's SpanKind


_SMALL = [bytes((i,)) for i in range(0x80)]  # the one-byte varints


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


def _any_value(value: Any) -> bytes | None:
    """An AnyValue of a plain type (None: another type, the SDK encodes it)."""
    cls = value.__class__
    if cls is str:
        return _field(b"\x0a", value.encode())
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:
        if -_INT64 <= value < _INT64:
            return b"\x18" + _varint(value & _MASK64)
        return None
    if cls is float:
        return b"\x21" + _pack_double(value)
    if cls is bytes:
        return _field(b"\x3a", value)
    return None


class Delegate(Exception):
    """A batch the SDK's own encoder must write, so that what is sent, refused or
    logged is exactly what the SDK does: a value nested deeper than
    :data:`MAX_NESTING` (protobuf's recursion limit, counted from the request, decides
    there), an attribute the SDK skips with an error log, a severity out of range."""


#: sequences and mappings nested deeper than this send the batch to the SDK's encoder
MAX_NESTING = 8
_PLAIN = frozenset({str, bool, int, float, bytes})


def _nesting(value: Any, limit: int = MAX_NESTING + 1) -> int:
    """How deep sequences and mappings go in ``value`` (counting stops past ``limit``)."""
    if value.__class__ in _PLAIN or limit <= 0 or isinstance(value, (str, bytes)):
        return 0
    if isinstance(value, Mapping):
        children: Any = value.values()
    elif isinstance(value, Sequence):
        children = value
    else:
        return 0
    return 1 + max((_nesting(v, limit - 1) for v in children), default=0)


def _items(attributes: Any) -> Any:
    """The attributes' items: a BoundedAttributes' own dict (the same order), not its
    generic mapping view, which looks every value up again."""
    return getattr(attributes, "_dict", attributes).items()


class _Attributes:
    """KeyValue fields, with jobpulse's repeating (key, value) pairs kept ready."""

    def __init__(self, encode_key_value: Callable[[str, Any], Any]) -> None:
        self.encode_key_value = encode_key_value  # the SDK's, for every other type
        #: (field tag, key, type, value) -> the whole field, for CACHED_KEYS only
        self.cache: dict[tuple[bytes, str, type, Any], bytes] = {}
        #: key -> its KeyValue.key field (keys are names, not data)
        self.keys: dict[str, bytes] = {}

    def encode(self, tag: bytes, attributes: Any) -> list[bytes]:
        """Each attribute as a ``tag`` field of a KeyValue (skipped as the SDK skips it)."""
        if not attributes:
            return []
        out = []
        cache = self.cache
        keys = self.keys
        cacheable = _encoding.cacheable
        for key, value in _items(attributes):
            cls = value.__class__
            entry = None
            if cacheable(key, value):
                entry = (tag, key, cls, value)
                encoded = cache.get(entry)
                if encoded is not None:
                    out.append(encoded)
                    continue
            if cls not in _PLAIN and _nesting(value) > MAX_NESTING:
                raise Delegate(key)
            try:
                any_value = _any_value(value) if key.__class__ is str else None
                if any_value is None:
                    kv = self.encode_key_value(key, value).SerializePartialToString()
                else:
                    key_field = keys.get(key)
                    if key_field is None:
                        if len(keys) >= _encoding.MAX_ENTRIES:
                            keys.clear()
                        key_field = keys[key] = _field(b"\x0a", key.encode())
                    kv = key_field + _field(b"\x12", any_value)
            except Exception:  # noqa: BLE001 - the SDK skips it, and logs it: its encoder's job
                raise Delegate(key) from None
            encoded = _field(tag, kv)
            if entry is not None:
                if len(cache) >= _encoding.MAX_ENTRIES:
                    cache.clear()
                cache[entry] = encoded
            out.append(encoded)
        return out


def _flags(context: Any) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)
    return _pack_fixed32(flags)


class _Writer:
    """A request of items grouped by resource, then instrumentation scope."""

    def __init__(self, sdk: Any) -> None:
        #: the SDK's common encoder module (resource, scope, key-value functions)
        self.sdk = sdk
        self.attributes = _Attributes(sdk._encode_key_value)
        self._resources: dict[int, tuple[Any, bytes | None]] = {}
        self._scopes: dict[int, tuple[Any, bytes | None]] = {}

    def item(self, item: Any) -> bytes:
        raise NotImplementedError

    # -- a batch ------------------------------------------------------------------
    @staticmethod
    def _once(
        table: dict[int, tuple[Any, bytes | None]], obj: Any, encode: Any, bound: int
    ) -> bytes | None:
        """The SDK's ``encode(obj)`` of a resource or scope, serialized (None: the SDK
        sets no field), kept per object: every item of a process shares them."""
        known = table.get(id(obj))
        if known is None or known[0] is not obj:
            if len(table) > bound:
                table.clear()
            message = encode(obj)
            data = None if message is None else message.SerializePartialToString()
            known = table[id(obj)] = (obj, data)
        return known[1]

    def request(self, items: Sequence[Any]) -> bytes:
        """The export request: items grouped by resource, then scope, as the SDK groups
        them (equal objects together, in the order first seen)."""
        # The SDK's grouping: dicts keyed by the objects (hash and equality), the first
        # key kept; looked up once per distinct (resource, scope) pair, not per item.
        groups: dict[Any, dict[Any, list[bytes]]] = {}
        lists: dict[tuple[int, int], list[bytes]] = {}
        for item in items:
            resource = item.resource
            scope = item.instrumentation_scope or None
            pair = (id(resource), id(scope))
            encoded = lists.get(pair)
            if encoded is None:
                encoded = lists[pair] = groups.setdefault(resource, {}).setdefault(scope, [])
            encoded.append(self.item(item))
        out = []
        for resource, by_scope in groups.items():
            data = self._once(self._resources, resource, self.sdk._encode_resource, 64)
            body = [_field(b"\x0a", data or b"")]
            for scope, encoded in by_scope.items():
                scope_parts = []
                scope_data = self._once(
                    self._scopes, scope, self.sdk._encode_instrumentation_scope, 256
                )
                if scope_data is not None:
                    scope_parts.append(_field(b"\x0a", scope_data))
                scope_parts.extend(_field(b"\x12", s) for s in encoded)
                schema = scope.schema_url if scope else None
                if schema:
                    scope_parts.append(_field(b"\x1a", schema.encode()))
                body.append(_field(b"\x12", b"".join(scope_parts)))
            if resource.schema_url:
                body.append(_field(b"\x1a", resource.schema_url.encode()))
            out.append(_field(b"\x0a", b"".join(body)))
        return b"".join(out)


class SpanEncoder(_Writer):
    """``encode_spans(spans).SerializePartialToString()``, written directly."""

    def item(self, span: Any) -> bytes:
        context = span.get_span_context()
        parts = [
            b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
            b"\x12\x08", context.span_id.to_bytes(8, "big"),
        ]  # fmt: skip
        trace_state = context.trace_state
        if trace_state:
            parts.append(
                _field(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items()).encode())
            )
        parent = span.parent
        if parent:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        name = span.name
        if name:
            parts.append(_field(b"\x2a", name.encode()))
        parts.append(b"\x30" + _varint(_KINDS[span.kind.value]))
        start, end = span.start_time, span.end_time
        if start:
            parts.append(b"\x39" + _pack_fixed64(start))
        if end:
            parts.append(b"\x41" + _pack_fixed64(end))
        parts.extend(
            self.attributes.encode(b"\x4a", getattr(span, "_attributes", None) or span.attributes)
        )
        dropped = span.dropped_attributes
        if dropped:
            parts.append(b"\x50" + _varint(dropped))
        for event in span.events:
            parts.append(_field(b"\x5a", self._event(event)))
        dropped = span.dropped_events
        if dropped:
            parts.append(b"\x60" + _varint(dropped))
        for link in span.links:
            parts.append(_field(b"\x6a", self._link(link)))
        dropped = span.dropped_links
        if dropped:
            parts.append(b"\x70" + _varint(dropped))
        status = span.status
        if status is not None:
            parts.append(_field(b"\x7a", self._status(status)))
        parts.append(b"\x85\x01" + _flags(parent))
        return b"".join(parts)

    def _event(self, event: Any) -> bytes:
        parts = []
        timestamp = event.timestamp
        if timestamp:
            parts.append(b"\x09" + _pack_fixed64(timestamp))
        if event.name:
            parts.append(_field(b"\x12", event.name.encode()))
        parts.extend(self.attributes.encode(b"\x1a", event.attributes))
        dropped = event.dropped_attributes
        if dropped:
            parts.append(b"\x20" + _varint(dropped))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:
        context = link.context
        parts = [
            b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
            b"\x12\x08", context.span_id.to_bytes(8, "big"),
        ]  # fmt: skip
        parts.extend(self.attributes.encode(b"\x22", link.attributes))
        dropped = link.dropped_attributes
        if dropped:
            parts.append(b"\x28" + _varint(dropped))
        parts.append(b"\x35" + _flags(context))
        return b"".join(parts)

    @staticmethod
    def _status(status: Any) -> bytes:
        out = b""
        if status.description:
            out = _field(b"\x12", status.description.encode())
        code = status.status_code.value
        if code:
            out += b"\x18" + _varint(code)
        return out


class LogEncoder(_Writer):
    """``encode_logs(batch).SerializeToString()``, written directly."""

    def item(self, item: Any) -> bytes:
        record = item.log_record
        parts = []
        timestamp = record.timestamp
        if timestamp:
            parts.append(b"\x09" + _pack_fixed64(timestamp))
        severity = getattr(record.severity_number, "value", None)
        if severity is not None:
            if severity.__class__ is not int or not 0 <= severity < _INT32:
                raise Delegate("severity_number")  # the SDK's to encode (or refuse)
            if severity:
                parts.append(b"\x10" + _varint(severity))
        text = record.severity_text
        if text:
            parts.append(_field(b"\x1a", text.encode()))
        body = record.body
        if body is None:
            parts.append(b"\x2a\x00")
        else:
            value = _any_value(body)
            if value is None:
                if _nesting(body) > MAX_NESTING:
                    raise Delegate("body")
                value = self.sdk._encode_value(body).SerializePartialToString()
            parts.append(_field(b"\x2a", value))
        parts.extend(self.attributes.encode(b"\x32", record.attributes))
        dropped = item.dropped_attributes
        if dropped:
            parts.append(b"\x38" + _varint(dropped))
        flags = int(record.trace_flags)
        if flags:
            parts.append(b"\x45" + _pack_fixed32(flags))
        trace_id, span_id = record.trace_id, record.span_id
        if trace_id != 0:  # the SDK's test: None is an error there, and here
            parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
        if span_id != 0:
            parts.append(b"\x52\x08" + span_id.to_bytes(8, "big"))
        observed = record.observed_timestamp
        if observed:
            parts.append(b"\x59" + _pack_fixed64(observed))
        event_name = record.event_name
        if event_name:
            parts.append(_field(b"\x62", event_name.encode()))
        return b"".join(parts)


class EncodedRequest:
    """What the exporter gets instead of the SDK's request message: the bytes (all the
    exporter asks for), and the SDK's message, built on demand, for anything else
    asked of it (from then on the message, which a caller may change, is the truth)."""

    __slots__ = ("_batch", "_data", "_message", "_sdk_encode")

    def __init__(self, data: bytes, batch: Sequence[Any], sdk_encode: Callable[..., Any]) -> None:
        self._data = data
        self._batch = batch
        self._sdk_encode = sdk_encode
        self._message: Any = None

    def SerializePartialToString(self, **kwargs: Any) -> bytes:  # protobuf's name
        if kwargs or self._message is not None:  # asked for more, or changed through it
            return self._sdk().SerializePartialToString(**kwargs)  # type: ignore[no-any-return]
        return self._data

    def SerializeToString(self, **kwargs: Any) -> bytes:  # protobuf's name
        if kwargs or self._message is not None:
            return self._sdk().SerializeToString(**kwargs)  # type: ignore[no-any-return]
        return self._data

    def ByteSize(self) -> int:  # protobuf's name
        if self._message is not None:
            return self._sdk().ByteSize()  # type: ignore[no-any-return]
        return len(self._data)

    def _sdk(self) -> Any:
        if self._message is None:
            self._message = self._sdk_encode(self._batch)
        return self._message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sdk(), name)
