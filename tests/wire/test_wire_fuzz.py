"""Property tests: any bytes give messages or a WireError, never another exception or unbounded memory."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.wire import (
    NEED_DATA,
    Cancel,
    Connection,
    ConnectionClosed,
    ErrorCode,
    Hello,
    Notify,
    Ping,
    Query,
    ResponseChunk,
    ResponseEnd,
    ResponseHead,
    Role,
    StreamError,
    Usage,
    WireError,
    decode_payload,
    encode_frame,
)
from cocoon.wire.codec import FRAME_HEADER
from cocoon.wire.errors import LocalProtocolError

from .helpers import request

MAX_FRAME = 256
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_keys = st.text(max_size=8)
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
mappings = st.dictionaries(_keys, plain, max_size=4)
ids = st.integers(min_value=1, max_value=2**31 - 1)
usage = st.builds(
    Usage,
    prompt_tokens=st.integers(0, 2**63 - 1),
    cached_tokens=st.integers(0, 2**63 - 1),
    completion_tokens=st.integers(0, 2**63 - 1),
    reasoning_tokens=st.integers(0, 2**63 - 1),
)
messages = st.one_of(
    st.builds(
        Hello,
        role=st.sampled_from(Role),
        min_version=st.just(1),
        max_version=st.integers(1, 9),
        info=mappings,
    ),
    st.builds(Ping, nonce=st.integers(0, 2**63 - 1)),
    st.builds(
        Query, query_id=st.integers(0, 2**63 - 1), method=st.text(min_size=1, max_size=20), params=mappings
    ),
    st.builds(Notify, method=st.text(min_size=1, max_size=20), params=mappings),
    st.builds(ResponseChunk, stream_id=ids, data=st.binary(max_size=64)),
    st.builds(
        ResponseHead,
        stream_id=ids,
        status=st.integers(100, 599),
        headers=st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=3).map(
            tuple
        ),
    ),
    st.builds(ResponseEnd, stream_id=ids, usage=usage, meta=mappings),
    st.builds(
        StreamError,
        stream_id=ids,
        code=st.sampled_from(ErrorCode),
        message=st.text(max_size=20),
        usage=st.none() | usage,
    ),
    st.builds(Cancel, stream_id=ids, reason=st.text(max_size=20)),
    ids.map(lambda sid: request(sid)),
)


@FUZZ
@given(messages)
def test_every_valid_message_round_trips(msg: Any) -> None:
    assert decode_payload(encode_frame(msg)[4:]) == msg


def _drain(conn: Connection) -> None:
    """Read until NEED_DATA, close or error; check memory stays bounded."""
    for _ in range(10_000):
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            break
    assert len(conn._buffer) <= MAX_FRAME + FRAME_HEADER.size


@FUZZ
@given(st.lists(st.binary(max_size=600), max_size=8), st.booleans(), st.booleans())
def test_garbage_bytes(chunks: list[bytes], dialer: bool, eof: bool) -> None:
    conn = Connection(our_role=Role.PROXY, dialer=dialer, max_frame_size=MAX_FRAME)
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            _drain(conn)
    except WireError:
        pass


@FUZZ
@given(st.lists(messages, min_size=1, max_size=5), st.integers(0, 200), st.booleans())
def test_truncated_and_oversized_frames(msgs: list[Any], cut: int, oversize: bool) -> None:
    data = b"".join(encode_frame(msg) for msg in msgs)
    data = data[: max(0, len(data) - cut)]
    if oversize:
        data = FRAME_HEADER.pack(MAX_FRAME + 1) + bytes(MAX_FRAME + 1) + data
    conn = Connection(our_role=Role.PROXY, dialer=False, max_frame_size=MAX_FRAME)
    try:
        conn.receive_data(data)
        _drain(conn)
        conn.receive_data(b"")
        _drain(conn)
    except WireError:
        pass
    else:
        assert not oversize


@FUZZ
@given(st.lists(st.integers(0, 40) | plain, max_size=10))
def test_arbitrary_msgpack_arrays_decode_or_fail_cleanly(raw: list[Any]) -> None:
    try:
        payload = msgpack.packb(raw, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    with contextlib.suppress(LocalProtocolError):
        decode_payload(payload)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_payload_bytes(payload: bytes) -> None:
    with contextlib.suppress(LocalProtocolError):
        decode_payload(payload)
