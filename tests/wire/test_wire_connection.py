"""Two Connections joined in memory: handshake, streams, queries, late messages, errors, EOF."""

from __future__ import annotations

import pytest

from cocoon.wire import (
    NEED_DATA,
    Cancel,
    Connection,
    ConnectionClosed,
    ConnState,
    ErrorCode,
    Goodbye,
    HelloAck,
    LocalProtocolError,
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
    SideState,
    StreamError,
    StreamState,
    encode_frame,
    negotiate_version,
)

from .helpers import USAGE, ConnectionPair, hello, request


@pytest.fixture
def pair() -> ConnectionPair:
    p = ConnectionPair()
    p.handshake()
    return p


def test_handshake_negotiates(pair: ConnectionPair) -> None:
    for conn in (pair.dialer, pair.acceptor):
        assert conn.state is ConnState.OPEN
        assert conn.negotiated_version == 1
    assert pair.dialer.peer_hello == hello(Role.PROXY)
    assert pair.acceptor.peer_hello == hello(Role.CLIENT)


@pytest.mark.parametrize(
    ("dialer", "acceptor", "version"),
    [((1, 2), (0, 2), 2), ((1, 3), (1, 2), 2), ((1, 1), (1, 5), 1), ((3, 4), (1, 2), None)],
)
def test_negotiate_version(dialer: tuple[int, int], acceptor: tuple[int, int], version: int | None) -> None:
    assert negotiate_version(hello(Role.CLIENT, *dialer), hello(Role.PROXY, *acceptor)) == version


def test_no_overlap_means_goodbye_not_ack() -> None:
    p = ConnectionPair()
    p.send(p.dialer, hello(Role.CLIENT, 3, 4))
    p.send(p.acceptor, hello(Role.PROXY, 1, 2))
    with pytest.raises(LocalProtocolError, match="do not overlap"):
        p.acceptor.send(HelloAck(version=2, info={}))
    q = ConnectionPair()
    q.send(q.dialer, hello(Role.CLIENT, 3, 4))
    q.send(q.acceptor, hello(Role.PROXY, 1, 2))
    assert q.send(q.acceptor, Goodbye(reason="no common version")) == [Goodbye(reason="no common version")]
    q.dialer.receive_data(b"")
    assert q.dialer.next_event() == ConnectionClosed(clean=True, reason="no common version")
    assert q.dialer.state is ConnState.CLOSED


def test_wrong_version_in_ack_is_remote_error() -> None:
    p = ConnectionPair()
    p.send(p.dialer, hello(Role.CLIENT, 1, 2))
    p.send(p.acceptor, hello(Role.PROXY, 1, 2))
    # Forge an ack the acceptor's machine would refuse to build.
    p.dialer.receive_data(encode_frame(HelloAck(version=1, info={})))
    with pytest.raises(RemoteProtocolError, match="version 1, the ranges give 2"):
        p.dialer.next_event()
    assert p.dialer.their_state is SideState.ERROR


def test_our_hello_must_carry_our_role() -> None:
    conn = Connection(our_role=Role.WORKER, dialer=True)
    with pytest.raises(LocalProtocolError, match="our Hello says client"):
        conn.send(hello(Role.CLIENT))
    assert conn.our_state is SideState.ERROR
    with pytest.raises(LocalProtocolError, match="already broke"):
        conn.send(hello(Role.WORKER))


def test_full_stream(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    sid = d.next_stream_id()
    assert sid == 1 and a.next_stream_id() == 2
    assert pair.send(d, request(sid)) == [request(sid)]
    assert d.stream_state(sid) is StreamState.OPEN and a.stream_state(sid) is StreamState.OPEN
    pair.send(a, ResponseHead(stream_id=sid, status=200))
    for i in range(3):
        assert pair.send(a, ResponseChunk(stream_id=sid, data=bytes([i]))) == [
            ResponseChunk(stream_id=sid, data=bytes([i]))
        ]
    assert d.stream_state(sid) is StreamState.STREAMING
    pair.send(a, ResponseEnd(stream_id=sid, usage=USAGE, meta={"cost": 1}))
    assert d.stream_state(sid) is StreamState.CLOSED and d.open_streams == 0
    assert d.next_stream_id() == 3


def test_acceptor_opens_even_streams(pair: ConnectionPair) -> None:
    a = pair.acceptor
    assert pair.send(a, request(2)) == [request(2)]
    pair.send(pair.dialer, StreamError(stream_id=2, code=ErrorCode.NOT_FOUND, message="no model"))
    assert a.stream_state(2) is StreamState.CLOSED


def test_many_streams_interleaved(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    ids = []
    for _ in range(10):
        sid = d.next_stream_id()
        pair.send(d, request(sid))
        ids.append(sid)
    for sid in reversed(ids):
        pair.send(a, ResponseHead(stream_id=sid, status=200))
    for sid in ids:
        pair.send(a, ResponseChunk(stream_id=sid, data=b"x"))
    for sid in ids:
        pair.send(a, ResponseEnd(stream_id=sid, usage=USAGE, meta={}))
    assert d.open_streams == a.open_streams == 0


@pytest.mark.parametrize(
    ("sender", "msg", "why"),
    [
        ("dialer", request(2), "wrong parity"),
        ("acceptor", ResponseChunk(stream_id=1, data=b""), "never opened"),
        ("acceptor", ResponseEnd(stream_id=5, usage=USAGE, meta={}), "never opened"),
    ],
)
def test_stream_id_rules(pair: ConnectionPair, sender: str, msg: object, why: str) -> None:
    conn = getattr(pair, sender)
    with pytest.raises(LocalProtocolError, match=why):
        conn.send(msg)


def test_stream_ids_must_increase(pair: ConnectionPair) -> None:
    pair.send(pair.dialer, request(5))
    with pytest.raises(LocalProtocolError, match="reused"):
        pair.dialer.send(request(3))


def test_remote_stream_violations(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    pair.send(d, request(1))
    pair.send(a, ResponseHead(stream_id=1, status=200))
    pair.send(a, ResponseEnd(stream_id=1, usage=USAGE, meta={}))
    # A chunk after the end, forged past the acceptor's own checks:
    d.receive_data(encode_frame(ResponseChunk(stream_id=1, data=b"late")))
    with pytest.raises(RemoteProtocolError, match="finished stream 1"):
        d.next_event()
    assert d.state is ConnState.ERROR


def test_head_required_before_end(pair: ConnectionPair) -> None:
    pair.send(pair.dialer, request(1))
    with pytest.raises(LocalProtocolError, match="ResponseEnd from the stream responder"):
        pair.acceptor.send(ResponseEnd(stream_id=1, usage=USAGE, meta={}))


def test_late_chunks_after_our_cancel_are_dropped(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    pair.send(d, request(1))
    pair.send(a, ResponseHead(stream_id=1, status=200))
    in_flight = a.send(ResponseChunk(stream_id=1, data=b"a")) + a.send(
        ResponseEnd(stream_id=1, usage=USAGE, meta={})
    )
    cancel = d.send(Cancel(stream_id=1, reason="app left"))
    assert d.stream_state(1) is StreamState.CLOSED
    d.receive_data(in_flight + encode_frame(Ping(nonce=1)))
    assert d.next_event() == Ping(nonce=1)  # the chunk and the end vanished
    # The acceptor had already ended the stream: the crossing Cancel is dropped too.
    a.receive_data(cancel)
    assert a.next_event() is NEED_DATA
    assert a.state is ConnState.OPEN


def test_cancel_by_responder_then_opener_gets_nothing_more(pair: ConnectionPair) -> None:
    pair.send(pair.dialer, request(1))
    assert pair.send(pair.acceptor, Cancel(stream_id=1, reason="shutting down")) == [
        Cancel(stream_id=1, reason="shutting down")
    ]
    with pytest.raises(LocalProtocolError):
        pair.dialer.send(Cancel(stream_id=1))  # already closed on this side


def test_max_streams_each_way() -> None:
    p = ConnectionPair(max_streams=2)
    p.handshake()
    p.send(p.dialer, request(1))
    p.send(p.dialer, request(3))
    assert not p.dialer.can_open_stream()
    with pytest.raises(LocalProtocolError) as info:
        p.dialer.send(request(5))
    assert info.value.hint is ErrorCode.BUSY
    # A peer that ignores our limit is refused as BUSY.
    q = ConnectionPair(max_streams=2)
    q.handshake()
    frames = b"".join(encode_frame(request(sid)) for sid in (1, 3, 5))
    q.acceptor.receive_data(frames)
    q.acceptor.next_event()
    q.acceptor.next_event()
    with pytest.raises(RemoteProtocolError) as remote:
        q.acceptor.next_event()
    assert remote.value.hint is ErrorCode.BUSY


def test_queries(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    qid = d.next_query_id()
    pair.send(d, Query(query_id=qid, method="balance", params={}))
    fresh = ConnectionPair()
    fresh.handshake()
    d = fresh.dialer
    d.send(Query(query_id=qid, method="balance", params={}))
    with pytest.raises(LocalProtocolError, match="already outstanding"):
        d.send(Query(query_id=qid, method="x", params={}))
    assert pair.send(a, QueryResult(query_id=qid, result={"tokens": 5})) == [
        QueryResult(query_id=qid, result={"tokens": 5})
    ]


def test_query_answers_once(pair: ConnectionPair) -> None:
    d, a = pair.dialer, pair.acceptor
    pair.send(d, Query(query_id=9, method="m", params={}))
    pair.send(a, QueryError(query_id=9, code=ErrorCode.BAD_REQUEST, message="no"))
    with pytest.raises(LocalProtocolError, match="unknown query id 9"):
        a.send(QueryResult(query_id=9, result={}))


def test_unsolicited_answer_is_remote_error(pair: ConnectionPair) -> None:
    pair.dialer.receive_data(encode_frame(QueryResult(query_id=4, result={})))
    with pytest.raises(RemoteProtocolError, match="unknown query id 4"):
        pair.dialer.next_event()


def test_ping_pong_notify(pair: ConnectionPair) -> None:
    assert pair.send(pair.dialer, Ping(nonce=5)) == [Ping(nonce=5)]
    assert pair.send(pair.acceptor, Pong(nonce=5)) == [Pong(nonce=5)]
    assert pair.send(pair.acceptor, Notify(method="load", params={"n": 1})) == [
        Notify(method="load", params={"n": 1})
    ]


def test_goodbye_then_eof(pair: ConnectionPair) -> None:
    pair.send(pair.dialer, Goodbye(reason="done"))
    assert pair.dialer.state is ConnState.CLOSING
    with pytest.raises(LocalProtocolError):
        pair.dialer.send(Ping(nonce=1))
    pair.acceptor.receive_data(b"")
    assert pair.acceptor.next_event() == ConnectionClosed(clean=True, reason="done")
    assert pair.acceptor.next_event() == ConnectionClosed(clean=True, reason="done")
    assert pair.acceptor.state is ConnState.CLOSED


def test_message_after_goodbye_is_remote_error(pair: ConnectionPair) -> None:
    pair.send(pair.dialer, Goodbye(reason="done"))
    pair.acceptor.receive_data(encode_frame(Ping(nonce=1)))
    with pytest.raises(RemoteProtocolError, match="illegal in state closed"):
        pair.acceptor.next_event()


def test_eof_without_goodbye_and_inside_frame(pair: ConnectionPair) -> None:
    pair.dialer.receive_data(b"")
    assert pair.dialer.next_event() == ConnectionClosed(clean=False, reason="")
    pair.acceptor.receive_data(encode_frame(Ping(nonce=1))[:-1])
    pair.acceptor.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        pair.acceptor.next_event()
    with pytest.raises(LocalProtocolError):
        pair.dialer.receive_data(b"more")


def test_oversized_send_is_local_error() -> None:
    p = ConnectionPair(max_frame_size=128)
    p.handshake()
    p.send(p.dialer, request(1, body=b"", request_id=b"r"))
    p.send(p.acceptor, ResponseHead(stream_id=1, status=200))
    with pytest.raises(LocalProtocolError, match="limit is 128"):
        p.acceptor.send(ResponseChunk(stream_id=1, data=bytes(200)))


def test_statistics_counters(pair: ConnectionPair) -> None:
    before = pair.dialer.bytes_sent
    frame = pair.dialer.send(Ping(nonce=1))
    assert pair.dialer.bytes_sent == before + len(frame)
