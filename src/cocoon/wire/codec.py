"""Bytes ⇄ messages: frames and the msgpack payload layout.

A frame is ``u32 big-endian payload length`` + payload. The payload is one msgpack array
``[type_code, field_1, field_2, ...]`` with the message's fields in declaration order (see
``messages.py``). Enums travel as their values, ``Usage`` as a 4-array, headers as arrays of
2-arrays, ``None`` as nil. Arity is exact: a protocol version that changes a message gets a new
type code, so decoders never guess.

Decoding is strict and total: any malformed payload raises :class:`LocalProtocolError` here (the
connection relabels it as remote), never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

from cocoon.wire import messages as m
from cocoon.wire.codes import ErrorCode, Role
from cocoon.wire.errors import LocalProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_HEADER",
    "TYPE_CODES",
    "FrameBuffer",
    "decode_payload",
    "encode_frame",
    "encode_payload",
]

DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
FRAME_HEADER = struct.Struct(">I")

# Stable numbers: never reuse one. 1-15 connection, 16-31 RPC, 32-63 streams.
TYPE_CODES: dict[type[Any], int] = {
    m.Hello: 1,
    m.HelloAck: 2,
    m.Ping: 3,
    m.Pong: 4,
    m.Goodbye: 5,
    m.Query: 16,
    m.QueryResult: 17,
    m.QueryError: 18,
    m.Notify: 19,
    m.Request: 32,
    m.ResponseHead: 33,
    m.ResponseChunk: 34,
    m.ResponseEnd: 35,
    m.StreamError: 36,
    m.Cancel: 37,
}


def _usage_to_raw(usage: m.Usage | None) -> list[int] | None:
    if usage is None:
        return None
    return [usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens]


def _usage_from_raw(raw: Any) -> m.Usage:
    if not isinstance(raw, list) or len(raw) != 4:
        raise LocalProtocolError("Usage must be an array of 4 integers")
    return m.Usage(
        prompt_tokens=raw[0], cached_tokens=raw[1], completion_tokens=raw[2], reasoning_tokens=raw[3]
    )


def _optional_usage_from_raw(raw: Any) -> m.Usage | None:
    return None if raw is None else _usage_from_raw(raw)


def _headers_from_raw(raw: Any) -> Any:
    if not isinstance(raw, list):
        raise LocalProtocolError("ResponseHead.headers must be an array")
    return tuple(tuple(pair) if isinstance(pair, list) else pair for pair in raw)


def _same(raw: Any) -> Any:
    return raw


def _role(raw: Any) -> Role:
    if type(raw) is not str:
        raise LocalProtocolError("Hello.role must be a string")
    return Role(raw)


def _error_code(raw: Any) -> ErrorCode:
    if type(raw) is not int:
        raise LocalProtocolError("error code must be an integer")
    return ErrorCode(raw)


# Per message: (field name, raw → value, value → raw) in wire order.
_Field = tuple[str, Callable[[Any], Any], Callable[[Any], Any]]
_ENUM_OUT: Callable[[Any], Any] = lambda value: value.value  # noqa: E731


def _plain_field(name: str) -> _Field:
    return (name, _same, _same)


_LAYOUT: dict[type[Any], tuple[_Field, ...]] = {
    m.Hello: (
        ("role", _role, _ENUM_OUT),
        _plain_field("min_version"),
        _plain_field("max_version"),
        _plain_field("info"),
    ),
    m.HelloAck: (_plain_field("version"), _plain_field("info")),
    m.Ping: (_plain_field("nonce"),),
    m.Pong: (_plain_field("nonce"),),
    m.Goodbye: (_plain_field("reason"),),
    m.Query: (_plain_field("query_id"), _plain_field("method"), _plain_field("params")),
    m.QueryResult: (_plain_field("query_id"), _plain_field("result")),
    m.QueryError: (_plain_field("query_id"), ("code", _error_code, int), _plain_field("message")),
    m.Notify: (_plain_field("method"), _plain_field("params")),
    m.Request: tuple(
        _plain_field(name)
        for name in (
            "stream_id",
            "endpoint",
            "model",
            "body",
            "max_coefficient",
            "max_tokens",
            "timeout",
            "request_id",
            "meta",
        )
    ),
    m.ResponseHead: (
        _plain_field("stream_id"),
        _plain_field("status"),
        ("headers", _headers_from_raw, lambda headers: [list(pair) for pair in headers]),
    ),
    m.ResponseChunk: (_plain_field("stream_id"), _plain_field("data")),
    m.ResponseEnd: (
        _plain_field("stream_id"),
        ("usage", _usage_from_raw, _usage_to_raw),
        _plain_field("meta"),
    ),
    m.StreamError: (
        _plain_field("stream_id"),
        ("code", _error_code, int),
        _plain_field("message"),
        ("usage", _optional_usage_from_raw, _usage_to_raw),
    ),
    m.Cancel: (_plain_field("stream_id"), _plain_field("reason")),
}
_BY_CODE: dict[int, type[Any]] = {code: cls for cls, code in TYPE_CODES.items()}


class _Plan:
    """One message type's layout compiled for the hot paths: names, and only the fields that convert."""

    __slots__ = ("code", "decoders", "encoders", "names", "size")

    def __init__(self, cls: type[Any]) -> None:
        layout = _LAYOUT[cls]
        self.code = TYPE_CODES[cls]
        self.names = tuple(name for name, _, _ in layout)
        self.size = len(layout)
        # (index in the raw array, converter) for fields that are not passed through as they are
        self.decoders = tuple((i, f) for i, (_, f, _) in enumerate(layout, 1) if f is not _same)
        self.encoders = tuple((i, f) for i, (_, _, f) in enumerate(layout, 1) if f is not _same)


_PLANS: dict[type[Any], _Plan] = {cls: _Plan(cls) for cls in _LAYOUT}
_PLANS_BY_CODE: dict[int, tuple[type[Any], _Plan]] = {plan.code: (cls, plan) for cls, plan in _PLANS.items()}


# One Packer for every call (packb builds one per call). It never calls back into Python (no
# ``default``), so it holds the GIL throughout, and it resets its buffer when packing fails.
_pack = msgpack.Packer(use_bin_type=True).pack
_CHUNK = TYPE_CODES[m.ResponseChunk]
_END = TYPE_CODES[m.ResponseEnd]


def encode_payload(msg: m.Message) -> bytes:
    """The msgpack payload of one message (no frame header)."""
    cls = type(msg)
    if cls is m.ResponseChunk:  # the one message sent per streamed event
        return _pack([_CHUNK, msg.stream_id, msg.data])  # type: ignore[union-attr]
    plan = _PLANS.get(cls)
    if plan is None:
        raise LocalProtocolError(f"{cls.__name__} is not a wire message")
    raw: list[Any] = [plan.code]
    raw += [getattr(msg, name) for name in plan.names]
    for i, to_raw in plan.encoders:
        raw[i] = to_raw(raw[i])
    payload: bytes = _pack(raw)
    return payload


def encode_frame(msg: m.Message) -> bytes:
    """One complete frame: length header + payload."""
    payload = encode_payload(msg)
    return FRAME_HEADER.pack(len(payload)) + payload


def _reject_ext(code: int, data: bytes) -> Any:
    raise LocalProtocolError(f"msgpack extension type {code} is not allowed")


def decode_payload(payload: bytes | bytearray) -> m.Message:
    """Parse one payload; raises LocalProtocolError (only) if it is not exactly one valid message."""
    try:
        raw = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            timestamp=0,
        )
    except LocalProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo (ValueError, ExtraData, StackError, ...)
        raise LocalProtocolError(f"undecodable payload: {type(exc).__name__}: {exc}") from exc
    if not isinstance(raw, list) or not raw or type(raw[0]) is not int:
        raise LocalProtocolError("payload must be an array starting with an integer type code")
    if raw[0] == _CHUNK and len(raw) == 3:
        # The per-event message, checked inline (the same rules as its constructor); anything
        # unusual takes the general path below, which says what is wrong.
        stream_id, data = raw[1], raw[2]
        if type(stream_id) is int and 1 <= stream_id <= m.MAX_STREAM_ID and type(data) is bytes:
            return m.trusted_chunk(stream_id, data)
    if raw[0] == _END and len(raw) == 4 and type(raw[3]) is dict:
        # Once per answer, but its meta carries the receipt: checked in place, not copied.
        try:
            return m.wire_end(raw[1], _usage_from_raw(raw[2]), raw[3])
        except LocalProtocolError:
            raise
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"invalid ResponseEnd: {exc}") from exc
    entry = _PLANS_BY_CODE.get(raw[0])
    if entry is None:
        raise LocalProtocolError(f"unknown message type code {raw[0]}")
    cls, plan = entry
    if len(raw) != plan.size + 1:
        raise LocalProtocolError(f"{cls.__name__} needs {plan.size} fields, got {len(raw) - 1}")
    try:
        for i, from_raw in plan.decoders:
            raw[i] = from_raw(raw[i])
        msg: m.Message = cls(**dict(zip(plan.names, raw[1:], strict=True)))  # lengths checked above
    except LocalProtocolError:
        raise
    except (ValueError, TypeError) as exc:  # enum lookups, malformed pairs
        raise LocalProtocolError(f"invalid {cls.__name__}: {exc}") from exc
    return msg


class FrameBuffer:
    """Incoming bytes → complete frame payloads, with the frame size cap enforced at the header.

    A header announcing more than ``max_frame_size`` fails before its body is buffered, so at most
    ``max_frame_size + 4`` bytes of an incomplete frame are ever held.
    """

    __slots__ = ("_buf", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 1 <= max_frame_size <= 0xFFFFFFFF:
            raise ValueError("max_frame_size must be in [1, 2**32 - 1]")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0  # consumed prefix; compacted lazily so many small frames cost O(n)

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_payload(self) -> bytearray | None:
        """The next complete payload (a copy), or None if more bytes are needed."""
        available = len(self._buf) - self._pos
        if available < FRAME_HEADER.size:
            self._compact()
            return None
        (length,) = FRAME_HEADER.unpack_from(self._buf, self._pos)
        if length == 0:
            raise LocalProtocolError("empty frame")
        if length > self.max_frame_size:
            raise LocalProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame_size}")
        end = self._pos + FRAME_HEADER.size + length
        if end > len(self._buf):
            self._compact()
            return None
        payload = self._buf[self._pos + FRAME_HEADER.size : end]  # a slice is a copy: one is enough
        self._pos = end
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return payload

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
