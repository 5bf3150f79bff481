"""Bytes ⇄ messages: one table checked in both directions, and three ways of feeding the decoder."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from cocoon.wire import (
    NEED_DATA,
    TYPE_CODES,
    Cancel,
    Connection,
    ErrorCode,
    Goodbye,
    Hello,
    HelloAck,
    Message,
    Notify,
    Ping,
    Pong,
    Query,
    QueryError,
    QueryResult,
    RemoteProtocolError,
    ResponseChunk,
    ResponseEnd,
    ResponseHead,
    Role,
    StreamError,
    Usage,
    decode_payload,
    encode_frame,
)
from cocoon.wire.codec import FrameBuffer
from cocoon.wire.errors import LocalProtocolError

from .helpers import request

U = Usage(prompt_tokens=1, cached_tokens=0, completion_tokens=2, reasoning_tokens=0)

# (message, its exact frame). The hex pins the format: changing it is a protocol version bump.
CASES: list[tuple[Message, str]] = [
    (
        Hello(role=Role.WORKER, min_version=1, max_version=2, info={"model": "m"}),
        "000000149501a6776f726b6572010281a56d6f64656ca16d",
    ),
    (HelloAck(version=1, info={}), "0000000493020180"),
    (Ping(nonce=7), "00000003920307"),
    (Pong(nonce=2**40), "0000000b9204cf0000010000000000"),
    (Goodbye(reason="bye"), "000000069205a3627965"),
    (
        Query(query_id=1, method="balance", params={"a": [1, None]}),
        "00000011941001a762616c616e636581a1619201c0",
    ),
    (QueryResult(query_id=1, result={"ok": True}), "0000000893110181a26f6bc3"),
    (QueryError(query_id=2, code=ErrorCode.NOT_FOUND, message="no"), "00000009941202cd0194a26e6f"),
    (Notify(method="load", params={"x": 1.5}), "000000139313a46c6f616481a178cb3ff8000000000000"),
    (
        request(
            1, endpoint="/v1/chat/completions", model="m", body=b"{}", max_tokens=100, request_id=b"\x01" * 4
        ),
        "000000329a2001b42f76312f636861742f636f6d706c6574696f6e73a16dc4027b7dcd0fa064cb403e000000000000c4040101010180",
    ),
    (
        ResponseHead(stream_id=1, status=200, headers=(("content-type", "text/event-stream"),)),
        "00000026942101ccc89192ac636f6e74656e742d74797065b1746578742f6576656e742d73747265616d",
    ),
    (ResponseChunk(stream_id=1, data=b"hi"), "00000007932201c4026869"),
    (ResponseEnd(stream_id=1, usage=U, meta={"cost": 3}), "0000000f942301940100020081a4636f737403"),
    (
        StreamError(stream_id=3, code=ErrorCode.BUSY, message="full", usage=None),
        "0000000c952403cd01ada466756c6cc0",
    ),
    (
        StreamError(
            stream_id=3,
            code=ErrorCode.TIMEOUT,
            message="slow",
            usage=Usage(prompt_tokens=1, cached_tokens=0, completion_tokens=0, reasoning_tokens=0),
        ),
        "00000010952403cd01f8a4736c6f779401000000",
    ),
    (Cancel(stream_id=2, reason="gone"), "00000008932502a4676f6e65"),
]


def test_table_covers_every_message_type() -> None:
    assert {type(msg) for msg, _ in CASES} == set(TYPE_CODES)


@pytest.mark.parametrize(("msg", "frame"), CASES, ids=lambda v: type(v).__name__)
def test_encode_matches_table(msg: Message, frame: str) -> None:
    assert encode_frame(msg).hex() == frame


@pytest.mark.parametrize(("msg", "frame"), CASES, ids=lambda v: type(v).__name__)
def test_decode_matches_table(msg: Message, frame: str) -> None:
    assert decode_payload(bytes.fromhex(frame)[4:]) == msg


def _read_all(data: bytes, *, step: int | None, trailing: bytes = b"") -> tuple[list[Message], FrameBuffer]:
    buf = FrameBuffer()
    out: list[Message] = []
    chunks = [data + trailing] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    if step is not None and trailing:
        chunks.append(trailing)
    for chunk in chunks:
        buf.feed(chunk)
        while (payload := buf.next_payload()) is not None:
            out.append(decode_payload(payload))
    return out, buf


@pytest.mark.parametrize("mode", ["whole", "bytewise", "trailing"])
def test_decoder_feeding(mode: str) -> None:
    stream = b"".join(bytes.fromhex(frame) for _, frame in CASES)
    expected = [msg for msg, _ in CASES]
    if mode == "whole":
        got, buf = _read_all(stream, step=None)
        assert len(buf) == 0
    elif mode == "bytewise":
        got, buf = _read_all(stream, step=1)
        assert len(buf) == 0
    else:
        tail = bytes.fromhex(CASES[2][1])[:5]  # a frame cut short: must stay unread
        got, buf = _read_all(stream, step=None, trailing=tail)
        assert len(buf) == len(tail)
    assert got == expected


def test_oversized_header_fails_before_body_arrives() -> None:
    buf = FrameBuffer(max_frame_size=16)
    buf.feed((17).to_bytes(4, "big"))
    with pytest.raises(LocalProtocolError, match="exceeds the limit"):
        buf.next_payload()


def test_connection_relabels_decode_errors_as_remote() -> None:
    conn = Connection(our_role=Role.PROXY, dialer=False, max_frame_size=100)
    conn.receive_data((1000).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.hint is ErrorCode.PROTOCOL
    with pytest.raises(RemoteProtocolError):  # the side stays in ERROR
        conn.next_event()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xc1", "undecodable"),  # never-used msgpack byte
        (msgpack.packb({"a": 1}), "array"),
        (msgpack.packb([]), "array"),
        (msgpack.packb([99]), "unknown message type"),
        (msgpack.packb([3]), "needs 1 fields"),
        (msgpack.packb([3, 1, 2]), "needs 1 fields"),
        (msgpack.packb([3, -1]), "Ping.nonce"),
        (msgpack.packb([3, True]), "Ping.nonce"),
        (msgpack.packb([1, "wizard", 1, 1, {}]), "invalid Hello"),
        (msgpack.packb([18, 1, 777, "x"]), "invalid QueryError"),
        (msgpack.packb([35, 1, [1, 2], {}]), "Usage"),
        (msgpack.packb([33, 1, 200, [["a"]]]), "pair"),
        (msgpack.packb([19, "m", {1: 2}], strict_types=False), "undecodable"),  # int map key
        (msgpack.packb([19, "m", {"t": msgpack.ExtType(5, b"x")}]), "extension"),
        (msgpack.packb([3, 1]) + b"\x00", "undecodable"),  # extra data in the payload
    ],
)
def test_bad_payloads_are_protocol_errors(raw: bytes, why: str) -> None:
    with pytest.raises(LocalProtocolError, match=why):
        decode_payload(raw)


def test_need_data_until_whole_frame() -> None:
    conn = Connection(our_role=Role.PROXY, dialer=False)
    frame = encode_frame(Hello(role=Role.CLIENT, min_version=1, max_version=1, info={}))
    for byte in frame[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(frame[-1:])
    assert isinstance(conn.next_event(), Hello)


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


@pytest.mark.parametrize(
    "fields",
    [
        [1, [1, 0, 2, 0], {"receipt": {"worker": {"body": {"a": [1, b"x", None, 1.5]}, "sig": b"s"}}}],
        [1, [1, 0, 2, 0], {"deep": _nested(31, 7)}],  # the deepest leaf meta may hold
        [1, [1, 0, 2, 0], {"deep": _nested(31, [])}],  # an empty container at the limit
        [1, [1, 0, 2, 0], {"deep": _nested(32, 7)}],  # one level too deep
        [1, [1, 0, 2, 0], {"deep": _nested(40, {})}],
        [1, [1, 0, 2, 0], {"a": {b"bin": 1}}],  # a bytes key deep inside
        [1, [1, 0, 2, 0], {b"bin": 1}],
        [0, [1, 0, 2, 0], {}],  # stream id out of range
        [2**31, [1, 0, 2, 0], {}],
        [True, [1, 0, 2, 0], {}],
        ["1", [1, 0, 2, 0], {}],
        [1, [1, 0, -2, 0], {}],
        [1, [1, 0, 2], {}],
        [1, None, {}],
        [1, [1, 0, 2, 0], []],  # not a mapping: the general path says so
        [1, [1, 0, 2, 0], {"n": 2**64 - 1, "m": -(2**63)}],
    ],
)
def test_response_end_decodes_as_its_constructor_checks(fields: list[Any]) -> None:
    """The ResponseEnd fast path (meta checked in place) accepts and refuses what the constructor does."""
    payload = msgpack.packb([TYPE_CODES[ResponseEnd], *fields], use_bin_type=True)
    stream_id, usage, meta = fields
    names = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
    expected: ResponseEnd | None
    try:
        expected = ResponseEnd(
            stream_id=stream_id, usage=Usage(**dict(zip(names, usage, strict=True))), meta=meta
        )
    except (LocalProtocolError, TypeError, ValueError):
        expected = None
    if expected is None:
        with pytest.raises(LocalProtocolError):
            decode_payload(payload)
    else:
        decoded = decode_payload(payload)
        assert decoded == expected
        assert type(decoded) is ResponseEnd
