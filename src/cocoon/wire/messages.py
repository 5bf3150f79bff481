"""The typed messages nodes exchange. Each validates in its constructor: an invalid one cannot exist.

Messages are frozen, slotted, keyword-only dataclasses. Constructors normalise (bytes-like → bytes,
lists of pairs → tuples, tuples inside ``info``/``params`` → lists, so a decoded message equals the
one that was sent) and raise :class:`LocalProtocolError` on anything out of range. The decoder builds
messages through the same constructors, so the checks here are also the checks on peer input; the
exceptions are the per-event ResponseChunk, which the codec checks inline and builds with
:func:`trusted_chunk`, and ResponseEnd, whose decoded meta :func:`wire_end` checks in place.

Do not subclass these: the codec maps exact classes to type codes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.wire.codes import ErrorCode, Role
from cocoon.wire.errors import LocalProtocolError

__all__ = [
    "MAX_BLOB",
    "MAX_ID",
    "MAX_NAME",
    "MAX_TEXT",
    "MAX_VERSION",
    "Cancel",
    "ConnectionClosed",
    "Goodbye",
    "Hello",
    "HelloAck",
    "Message",
    "Notify",
    "Ping",
    "Pong",
    "Query",
    "QueryError",
    "QueryResult",
    "Request",
    "ResponseChunk",
    "ResponseEnd",
    "ResponseHead",
    "StreamError",
    "StreamMessage",
    "Usage",
    "trusted_chunk",
    "wire_end",
]

MAX_VERSION = 0xFFFF
MAX_ID = 2**63 - 1  # query ids, nonces, token counts: fit msgpack int64
MAX_STREAM_ID = 2**31 - 1
MAX_NAME = 256  # method, endpoint, model, header names
MAX_TEXT = 4096  # reasons and error messages
MAX_BLOB = 64  # request_id bytes (the reference uses 32)
MAX_HEADERS = 128
MAX_HEADER_VALUE = 8192
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_DEPTH = 32  # nesting inside info/params/meta

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _fail(cls: str, field: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{cls}.{field}: {why}")


def _int(cls: str, field: str, value: object, lo: int, hi: int) -> int:
    # bool is an int subclass; a True where a count belongs is a bug, not a 1.
    if type(value) is not int:
        raise _fail(cls, field, f"expected int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(cls, field, f"{value} outside [{lo}, {hi}]")
    return value


def _str(cls: str, field: str, value: object, max_len: int, *, min_len: int = 0) -> str:
    if type(value) is not str:
        raise _fail(cls, field, f"expected str, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise _fail(cls, field, f"length {len(value)} outside [{min_len}, {max_len}]")
    return value


def _bytes(cls: str, field: str, value: object, max_len: int | None = None, *, min_len: int = 0) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _fail(cls, field, f"expected bytes, got {type(value).__name__}")
    data = bytes(value)
    if len(data) < min_len or (max_len is not None and len(data) > max_len):
        raise _fail(cls, field, f"length {len(data)} outside [{min_len}, {max_len}]")
    return data


def _enum(cls: str, field: str, value: object, enum_type: type[Any]) -> Any:
    if not isinstance(value, enum_type):
        raise _fail(cls, field, f"expected {enum_type.__name__}, got {type(value).__name__}")
    return value


_LEAVES = frozenset({type(None), bool, float, str, bytes})


def _plain(cls: str, field: str, value: object, depth: int) -> Any:
    """Deep copy of a msgpack-able value: None, bool, 64-bit int, float, str, bytes, list, str-keyed dict."""
    if depth > MAX_DEPTH:
        raise _fail(cls, field, f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    # Exact built-in types first (all a decoder ever makes, nearly all a caller passes): no ABC checks.
    if kind is dict or kind is list:
        leaf_ok = depth < MAX_DEPTH  # children at depth + 1 may still be leaves
        if kind is dict:
            out: dict[str, Any] = {}
            for key, item in value.items():  # type: ignore[attr-defined]
                if type(key) is not str:
                    raise _fail(cls, field, f"mapping keys must be str, got {type(key).__name__}")
                if leaf_ok and (
                    type(item) in _LEAVES or (type(item) is int and _INT64_MIN <= item <= _UINT64_MAX)
                ):
                    out[key] = item
                else:
                    out[key] = _plain(cls, field, item, depth + 1)
            return out
        return [
            item if leaf_ok and type(item) in _LEAVES else _plain(cls, field, item, depth + 1)
            for item in value  # type: ignore[attr-defined]
        ]
    if kind in _LEAVES:
        return value
    if kind is int and _INT64_MIN <= value <= _UINT64_MAX:  # type: ignore[operator]
        return value
    return _plain_other(cls, field, value, depth)


def _plain_other(cls: str, field: str, value: object, depth: int) -> Any:
    """:func:`_plain` for anything but the exact built-in types: subclasses, tuples, mappings, views."""
    if value is None or isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise _fail(cls, field, f"integer {value} does not fit 64 bits")
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_plain(cls, field, item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _fail(cls, field, f"mapping keys must be str, got {type(key).__name__}")
            out[key] = _plain(cls, field, item, depth + 1)
        return out
    raise _fail(cls, field, f"{type(value).__name__} cannot travel on the wire")


def _mapping(cls: str, field: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(cls, field, f"expected a mapping, got {type(value).__name__}")
    result: dict[str, Any] = _plain(cls, field, value, 0)
    return result


def _check_decoded(cls: str, field: str, value: dict[str, Any] | list[Any], depth: int) -> None:
    """:func:`_plain`'s rules for a value msgpack has just decoded, checked in place without a copy.

    A decoder makes only exact dicts, lists and leaves, and its integers fit 64 bits, so what is
    left to check is str keys and the nesting depth (no value deeper than ``MAX_DEPTH``).
    """
    if depth >= MAX_DEPTH and (depth > MAX_DEPTH or value):
        raise _fail(cls, field, f"nested deeper than {MAX_DEPTH}")
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise _fail(cls, field, f"mapping keys must be str, got {type(key).__name__}")
        items: Any = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            _check_decoded(cls, field, item, depth + 1)


def _set(obj: object, field: str, value: object) -> None:
    object.__setattr__(obj, field, value)


# --- connection level ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message from each side: who I am, which protocol versions I speak, my announce."""

    role: Role
    min_version: int
    max_version: int
    info: Mapping[str, Any]

    def __post_init__(self) -> None:
        _enum("Hello", "role", self.role, Role)
        _int("Hello", "min_version", self.min_version, 0, MAX_VERSION)
        _int("Hello", "max_version", self.max_version, 0, MAX_VERSION)
        if self.min_version > self.max_version:
            raise _fail("Hello", "min_version", f"{self.min_version} > max_version {self.max_version}")
        _set(self, "info", _mapping("Hello", "info", self.info))


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloAck:
    """The acceptor's answer to the dialer's Hello: the chosen version and per-peer info."""

    version: int
    info: Mapping[str, Any]

    def __post_init__(self) -> None:
        _int("HelloAck", "version", self.version, 0, MAX_VERSION)
        _set(self, "info", _mapping("HelloAck", "info", self.info))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    nonce: int

    def __post_init__(self) -> None:
        _int("Ping", "nonce", self.nonce, 0, MAX_ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    nonce: int

    def __post_init__(self) -> None:
        _int("Pong", "nonce", self.nonce, 0, MAX_ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye:
    """Graceful close: the sender sends nothing more."""

    reason: str

    def __post_init__(self) -> None:
        _str("Goodbye", "reason", self.reason, MAX_TEXT)


# --- RPC (control plane) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    query_id: int
    method: str
    params: Mapping[str, Any]

    def __post_init__(self) -> None:
        _int("Query", "query_id", self.query_id, 0, MAX_ID)
        _str("Query", "method", self.method, MAX_NAME, min_len=1)
        _set(self, "params", _mapping("Query", "params", self.params))


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    query_id: int
    result: Mapping[str, Any]

    def __post_init__(self) -> None:
        _int("QueryResult", "query_id", self.query_id, 0, MAX_ID)
        _set(self, "result", _mapping("QueryResult", "result", self.result))


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryError:
    query_id: int
    code: ErrorCode
    message: str

    def __post_init__(self) -> None:
        _int("QueryError", "query_id", self.query_id, 0, MAX_ID)
        _enum("QueryError", "code", self.code, ErrorCode)
        _str("QueryError", "message", self.message, MAX_TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """One-way message: no answer, no delivery receipt."""

    method: str
    params: Mapping[str, Any]

    def __post_init__(self) -> None:
        _str("Notify", "method", self.method, MAX_NAME, min_len=1)
        _set(self, "params", _mapping("Notify", "params", self.params))


# --- request streams (data plane) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens used by one request, in the four classes COCOON bills."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens"):
            _int("Usage", name, getattr(self, name), 0, MAX_ID)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.cached_tokens + self.completion_tokens + self.reasoning_tokens


def _stream_id(cls: str, value: object) -> int:
    return _int(cls, "stream_id", value, 1, MAX_STREAM_ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """Opens a stream: one inference request. ``body`` is the OpenAI-style JSON, opaque here."""

    stream_id: int
    endpoint: str
    model: str
    body: bytes
    max_coefficient: int
    max_tokens: int
    timeout: float
    request_id: bytes
    meta: Mapping[str, Any]

    def __post_init__(self) -> None:
        _stream_id("Request", self.stream_id)
        _str("Request", "endpoint", self.endpoint, MAX_NAME, min_len=1)
        _str("Request", "model", self.model, MAX_NAME, min_len=1)
        _set(self, "body", _bytes("Request", "body", self.body))
        _int("Request", "max_coefficient", self.max_coefficient, 0, MAX_ID)
        _int("Request", "max_tokens", self.max_tokens, 0, MAX_ID)
        timeout = self.timeout
        if type(timeout) is int:
            timeout = float(timeout)
        if type(timeout) is not float or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
            raise _fail("Request", "timeout", f"expected seconds in (0, {MAX_TIMEOUT}], got {timeout!r}")
        _set(self, "timeout", timeout)
        _set(self, "request_id", _bytes("Request", "request_id", self.request_id, MAX_BLOB, min_len=1))
        _set(self, "meta", _mapping("Request", "meta", self.meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHead:
    stream_id: int
    status: int
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _stream_id("ResponseHead", self.stream_id)
        _int("ResponseHead", "status", self.status, 100, 599)
        if not isinstance(self.headers, list | tuple):
            raise _fail("ResponseHead", "headers", "expected a sequence of (name, value) pairs")
        if len(self.headers) > MAX_HEADERS:
            raise _fail("ResponseHead", "headers", f"more than {MAX_HEADERS} headers")
        pairs = []
        for pair in self.headers:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise _fail("ResponseHead", "headers", "each header must be a (name, value) pair")
            name = _str("ResponseHead", "headers", pair[0], MAX_NAME, min_len=1)
            value = _str("ResponseHead", "headers", pair[1], MAX_HEADER_VALUE)
            pairs.append((name, value))
        _set(self, "headers", tuple(pairs))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseChunk:
    stream_id: int
    data: bytes

    def __post_init__(self) -> None:
        _stream_id("ResponseChunk", self.stream_id)
        _set(self, "data", _bytes("ResponseChunk", "data", self.data))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseEnd:
    """Last message of a successful stream: exact usage and service meta (cost, receipt, worker id)."""

    stream_id: int
    usage: Usage
    meta: Mapping[str, Any]

    def __post_init__(self) -> None:
        _stream_id("ResponseEnd", self.stream_id)
        _enum("ResponseEnd", "usage", self.usage, Usage)
        _set(self, "meta", _mapping("ResponseEnd", "meta", self.meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError:
    """Terminates a stream with an error; ``usage`` is what was delivered before it, if known."""

    stream_id: int
    code: ErrorCode
    message: str
    usage: Usage | None = None

    def __post_init__(self) -> None:
        _stream_id("StreamError", self.stream_id)
        _enum("StreamError", "code", self.code, ErrorCode)
        _str("StreamError", "message", self.message, MAX_TEXT)
        if self.usage is not None:
            _enum("StreamError", "usage", self.usage, Usage)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Either side abandons a stream at once (like h2 RST_STREAM); no answer follows."""

    stream_id: int
    reason: str = ""

    def __post_init__(self) -> None:
        _stream_id("Cancel", self.stream_id)
        _str("Cancel", "reason", self.reason, MAX_TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """Event (never sent): the peer's byte stream ended. ``clean`` if it said Goodbye first."""

    clean: bool
    reason: str = ""


# --- trusted construction -------------------------------------------------------------------------
# The constructors above validate everything, which peer input needs. A chunk the codec has just
# checked field by field, or one a link builds from bytes for a stream it owns, need not be checked
# again: these build it directly through the slots (a fifth of the constructor's cost).

_new = object.__new__
_chunk_stream_id = vars(ResponseChunk)["stream_id"].__set__  # the slot descriptors
_chunk_data = vars(ResponseChunk)["data"].__set__


def trusted_chunk(stream_id: int, data: bytes) -> ResponseChunk:
    """A ResponseChunk from an int stream id in range and exact ``bytes`` (the caller checked)."""
    chunk: ResponseChunk = _new(ResponseChunk)
    _chunk_stream_id(chunk, stream_id)
    _chunk_data(chunk, data)
    return chunk


_end_stream_id = vars(ResponseEnd)["stream_id"].__set__
_end_usage = vars(ResponseEnd)["usage"].__set__
_end_meta = vars(ResponseEnd)["meta"].__set__


def wire_end(stream_id: int, usage: Usage, meta: dict[str, Any]) -> ResponseEnd:
    """A ResponseEnd from a decoder: ``meta`` is msgpack's own fresh dict, checked in place (the
    constructor's copy through ``_plain`` walked a whole receipt twice). The stream id and usage are
    checked here; the caller passes a Usage it built through its constructor."""
    _stream_id("ResponseEnd", stream_id)
    _check_decoded("ResponseEnd", "meta", meta, 0)
    end: ResponseEnd = _new(ResponseEnd)
    _end_stream_id(end, stream_id)
    _end_usage(end, usage)
    _end_meta(end, meta)
    return end


StreamMessage = Request | ResponseHead | ResponseChunk | ResponseEnd | StreamError | Cancel
Message = Hello | HelloAck | Ping | Pong | Goodbye | Query | QueryResult | QueryError | Notify | StreamMessage
