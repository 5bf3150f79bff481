"""Constructors validate and normalise: an invalid message cannot be built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cocoon.wire import (
    Cancel,
    ErrorCode,
    Goodbye,
    Hello,
    HelloAck,
    LocalProtocolError,
    Notify,
    Ping,
    ProtocolError,
    Query,
    ResponseChunk,
    ResponseEnd,
    ResponseHead,
    Role,
    StreamError,
    Usage,
)

from .helpers import USAGE, request

BAD: list[tuple[str, Any]] = [
    ("hello role str", lambda: Hello(role="client", min_version=1, max_version=1, info={})),
    ("hello range", lambda: Hello(role=Role.CLIENT, min_version=2, max_version=1, info={})),
    ("hello version big", lambda: Hello(role=Role.CLIENT, min_version=1, max_version=70000, info={})),
    ("hello info not mapping", lambda: Hello(role=Role.CLIENT, min_version=1, max_version=1, info=[])),
    ("info int key", lambda: HelloAck(version=1, info={1: "a"})),
    ("info object", lambda: HelloAck(version=1, info={"a": object()})),
    ("info set", lambda: HelloAck(version=1, info={"a": {1}})),
    ("info huge int", lambda: HelloAck(version=1, info={"a": 2**64})),
    ("info too deep", lambda: HelloAck(version=1, info=_deep(40))),
    ("ping negative", lambda: Ping(nonce=-1)),
    ("ping bool", lambda: Ping(nonce=True)),
    ("ping float", lambda: Ping(nonce=1.0)),
    ("goodbye long", lambda: Goodbye(reason="x" * 5000)),
    ("query empty method", lambda: Query(query_id=1, method="", params={})),
    ("notify method type", lambda: Notify(method=b"m", params={})),
    ("stream id zero", lambda: ResponseChunk(stream_id=0, data=b"")),
    ("stream id huge", lambda: ResponseChunk(stream_id=2**31, data=b"")),
    ("chunk str", lambda: ResponseChunk(stream_id=1, data="text")),
    ("status", lambda: ResponseHead(stream_id=1, status=99)),
    ("header pair", lambda: ResponseHead(stream_id=1, status=200, headers=(("a",),))),
    ("header value type", lambda: ResponseHead(stream_id=1, status=200, headers=(("a", 1),))),
    ("too many headers", lambda: ResponseHead(stream_id=1, status=200, headers=(("a", "b"),) * 200)),
    (
        "usage negative",
        lambda: Usage(prompt_tokens=-1, cached_tokens=0, completion_tokens=0, reasoning_tokens=0),
    ),
    ("end usage missing", lambda: ResponseEnd(stream_id=1, usage=None, meta={})),
    ("error code int", lambda: StreamError(stream_id=1, code=500, message="x")),
    ("cancel reason type", lambda: Cancel(stream_id=1, reason=None)),
    ("request timeout 0", lambda: request(1, timeout=0)),
    ("request timeout nan", lambda: request(1, timeout=float("nan"))),
    ("request timeout str", lambda: request(1, timeout="1")),
    ("request id empty", lambda: request(1, request_id=b"")),
    ("request id long", lambda: request(1, request_id=bytes(65))),
    ("request model empty", lambda: request(1, model="")),
    ("request tokens negative", lambda: request(1, max_tokens=-1)),
    ("request body str", lambda: request(1, body="{}")),
]


def _deep(n: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(n):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("name", "build"), BAD, ids=[name for name, _ in BAD])
def test_invalid_messages_cannot_be_built(name: str, build: Any) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_messages_are_frozen_slotted_keyword_only() -> None:
    ping = Ping(nonce=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.nonce = 2  # type: ignore[misc]
    assert not hasattr(ping, "__dict__")
    with pytest.raises(TypeError):
        Ping(1)  # type: ignore[misc]


def test_normalisation_makes_decoded_equal_sent() -> None:
    ack = HelloAck(version=1, info={"t": (1, 2), "b": bytearray(b"x"), "m": {"k": (3,)}})
    assert ack.info == {"t": [1, 2], "b": b"x", "m": {"k": [3]}}
    head = ResponseHead(stream_id=1, status=200, headers=[["a", "b"]])
    assert head.headers == (("a", "b"),)
    req = request(1, timeout=5, body=memoryview(b"ab"))
    assert req.timeout == 5.0 and type(req.timeout) is float and req.body == b"ab"


def test_info_is_copied_not_shared() -> None:
    info: dict[str, Any] = {"a": [1]}
    msg = Hello(role=Role.CLIENT, min_version=1, max_version=1, info=info)
    info["a"].append(2)
    assert msg.info == {"a": [1]}


def test_usage_total_and_optional_usage_on_error() -> None:
    assert USAGE.total_tokens == 9
    assert StreamError(stream_id=1, code=ErrorCode.INTERNAL, message="x").usage is None


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError):
        ProtocolError("x")
    assert LocalProtocolError("x").hint is ErrorCode.PROTOCOL
    assert LocalProtocolError("x", "going away").hint == "going away"
