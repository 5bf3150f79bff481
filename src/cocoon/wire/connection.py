"""The sans-IO protocol object: bytes in, messages out; messages in, bytes out. No sockets, no clock.

    conn = Connection(our_role=Role.WORKER, dialer=True)
    transport.write(conn.send(Hello(...)))
    conn.receive_data(await transport.read())      # b"" means the peer closed
    while (event := conn.next_event()) is not NEED_DATA: ...

``send`` checks the message against both state machines (``state.py``) before producing bytes;
``next_event`` decodes, checks and returns one message at a time. Anything illegal moves the
offending side to ERROR: ``send`` raises :class:`LocalProtocolError`, ``next_event`` raises
:class:`RemoteProtocolError`, and every later call on that side fails at once.

Rules that are not in the tables (they need ids, not states):

* stream ids: the dialer opens odd ids, the acceptor even ids, each strictly increasing; at most
  ``max_streams`` streams opened by each side are open at once (a peer going over ours is BUSY);
* messages for a stream that is finished are a protocol error, except two that may be in flight:
  a ``Cancel`` (it crossed the end of the stream) and anything on a stream *we* cancelled (the peer
  had not seen our Cancel yet). Those are dropped silently. Cancelled ids are remembered in a
  bounded set (``4 × max_streams``);
* queries: ids are unique among a side's outstanding queries; each gets exactly one answer; at most
  ``max_queries`` outstanding per side;
* handshake: our Hello must carry our role; HelloAck must carry the negotiated version
  (:func:`negotiate_version`); an acceptor that cannot agree sends Goodbye instead.
"""

from __future__ import annotations

from typing import Any

from cocoon.wire import messages as m
from cocoon.wire.codec import (
    DEFAULT_MAX_FRAME_SIZE,
    FRAME_HEADER,
    FrameBuffer,
    decode_payload,
    encode_frame,
)
from cocoon.wire.codes import ErrorCode, Role
from cocoon.wire.errors import LocalProtocolError, RemoteProtocolError
from cocoon.wire.state import (
    ConnectionMachine,
    ConnState,
    Side,
    SideState,
    StreamRole,
    StreamState,
    stream_transition,
)

__all__ = [
    "DEFAULT_MAX_QUERIES",
    "DEFAULT_MAX_STREAMS",
    "MIN_PROTOCOL_VERSION",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Connection",
    "negotiate_version",
]

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
DEFAULT_MAX_STREAMS = 1024
DEFAULT_MAX_QUERIES = 1024

_STREAM_TYPES = (m.Request, m.ResponseHead, m.ResponseChunk, m.ResponseEnd, m.StreamError, m.Cancel)


class NEED_DATA:
    """Returned (the class itself) by ``next_event`` when a whole frame has not arrived yet."""

    def __init__(self) -> None:
        raise TypeError("NEED_DATA is a sentinel; compare with `is`")


def negotiate_version(dialer: m.Hello, acceptor: m.Hello) -> int | None:
    """The version both speak: min of the two maxima, if the ranges overlap; else None."""
    low = max(dialer.min_version, acceptor.min_version)
    high = min(dialer.max_version, acceptor.max_version)
    return high if low <= high else None


_OPENER = (Side.ACCEPTOR, Side.DIALER)  # a stream's opener, by stream_id & 1 (= its SIDE_INDEX)


class Connection:
    """One node-to-node link, one side of it. See the module docstring."""

    # Slots: every idle link holds one per end (its attribute dict was ~1 KiB).
    __slots__ = (
        "_ack",
        "_buffer",
        "_cancelled",
        "_eof",
        "_machine",
        "_next_query_id",
        "_our_hello",
        "_our_high",
        "_our_open",
        "_peer_goodbye",
        "_peer_hello",
        "_queries",
        "_streams",
        "_their_high",
        "_their_open",
        "bytes_received",
        "bytes_sent",
        "max_frame_size",
        "max_queries",
        "max_streams",
        "negotiated_version",
        "our_role",
        "our_side",
        "their_side",
    )

    def __init__(
        self,
        *,
        our_role: Role,
        dialer: bool,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_queries: int = DEFAULT_MAX_QUERIES,
    ) -> None:
        if not isinstance(our_role, Role):
            raise TypeError("our_role must be a Role")
        if max_streams < 1 or max_queries < 1:
            raise ValueError("max_streams and max_queries must be >= 1")
        self.our_role = our_role
        self.our_side = Side.DIALER if dialer else Side.ACCEPTOR
        self.their_side = self.our_side.other
        self.max_frame_size = max_frame_size
        self.max_streams = max_streams
        self.max_queries = max_queries
        self._machine = ConnectionMachine()
        self._buffer = FrameBuffer(max_frame_size)
        self._eof = False
        # Per side as slots, ours and theirs: dicts keyed by Side were ~0.2 KiB each per link end.
        self._our_hello: m.Hello | None = None
        self._peer_hello: m.Hello | None = None
        self._ack: m.HelloAck | None = None
        self._peer_goodbye: m.Goodbye | None = None
        self.negotiated_version: int | None = None
        # Streams: open ones only; finished ones are known by id (<= the opener's high-water mark).
        self._streams: dict[int, StreamState] = {}
        self._our_open = self._their_open = 0  # streams open, by opener
        # The highest stream id each side opened: the dialer's are odd (1, 3, ...), the acceptor's even.
        self._our_high, self._their_high = (-1, 0) if dialer else (0, -1)
        # Streams we cancelled (made with the first): insertion-ordered, the oldest is dropped first.
        self._cancelled: dict[int, None] | None = None
        # Queries sent by each side that still await their one answer; the dict is made with the
        # first query and a side's set with its first (most links never carry one).
        self._queries: dict[Side, set[int]] | None = None
        self._next_query_id = 1
        self.bytes_sent = 0
        self.bytes_received = 0

    # --- state -------------------------------------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._machine.combined

    @property
    def our_state(self) -> SideState:
        return self._machine.state(self.our_side)

    @property
    def their_state(self) -> SideState:
        return self._machine.state(self.their_side)

    @property
    def our_hello(self) -> m.Hello | None:
        return self._our_hello

    @property
    def peer_hello(self) -> m.Hello | None:
        return self._peer_hello

    @property
    def hello_ack(self) -> m.HelloAck | None:
        """The acceptor's HelloAck once sent (acceptor) or received (dialer)."""
        return self._ack

    @property
    def peer_goodbye(self) -> m.Goodbye | None:
        return self._peer_goodbye

    @property
    def buffered(self) -> int:
        """Received bytes not yet returned as messages (what a reader that falls behind holds)."""
        return len(self._buffer)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def can_open_stream(self) -> bool:
        return self._our_open < self.max_streams

    def can_send_query(self) -> bool:
        """False once ``max_queries`` of our queries await answers (sending another would fail)."""
        queries = self._queries
        return queries is None or len(queries.get(self.our_side, ())) < self.max_queries

    def stream_state(self, stream_id: int) -> StreamState:
        state = self._streams.get(stream_id)
        if state is not None:
            return state
        if 0 < stream_id <= self._high_of(_OPENER[stream_id & 1]):
            return StreamState.CLOSED
        return StreamState.IDLE

    def next_stream_id(self) -> int:
        """The id our next Request must use (not reserved until that Request is sent)."""
        nxt = self._our_high + 2
        if nxt > m.MAX_STREAM_ID:
            raise LocalProtocolError("stream ids exhausted on this connection; open a new one")
        return nxt

    def next_query_id(self) -> int:
        """A fresh id for our next Query."""
        qid = self._next_query_id
        self._next_query_id += 1
        return qid

    # --- sending -----------------------------------------------------------------------------

    def send(self, msg: m.Message, *, payload: bytes | None = None) -> bytes:
        """Check ``msg`` against the protocol and return its frame; LocalProtocolError if illegal.

        ``payload``: ``encode_payload(msg)`` when the caller already made it (to check its size).
        """
        if self.our_state is SideState.ERROR:
            raise LocalProtocolError("cannot send: this side already broke the protocol")
        try:
            data = encode_frame(msg) if payload is None else FRAME_HEADER.pack(len(payload)) + payload
            if len(data) - 4 > self.max_frame_size:
                raise LocalProtocolError(
                    f"{type(msg).__name__} needs a {len(data) - 4}-byte frame, limit is {self.max_frame_size}"
                )
            self._process(self.our_side, msg)
        except LocalProtocolError:
            self._machine.set_error(self.our_side)
            raise
        self.bytes_sent += len(data)
        return data

    def send_failed(self) -> None:
        """The transport failed to write what ``send`` returned: nothing more can be sent."""
        self._machine.set_error(self.our_side)

    # --- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side."""
        if self._eof:
            if data:
                raise LocalProtocolError("received data after end of stream")
            return
        if data:
            self.bytes_received += len(data)
            self._buffer.feed(data)
        else:
            self._eof = True

    def next_event(self) -> m.Message | type[NEED_DATA] | m.ConnectionClosed:
        """The next message from the peer, NEED_DATA, or ConnectionClosed once the stream ended."""
        if self.their_state is SideState.ERROR:
            raise RemoteProtocolError("the peer already broke the protocol")
        try:
            while True:
                payload = self._buffer.next_payload()
                if payload is None:
                    if not self._eof:
                        return NEED_DATA
                    if len(self._buffer):
                        raise LocalProtocolError("connection ended inside a frame")
                    return self._closed_event()
                msg = decode_payload(payload)
                if self._process(self.their_side, msg):
                    return msg
                # else: a late message for a stream we cancelled; dropped by design
        except LocalProtocolError as exc:
            self._machine.set_error(self.their_side)
            raise exc._relabel_as_remote() from exc

    def _closed_event(self) -> m.ConnectionClosed:
        goodbye = self.peer_goodbye
        self._machine.set_closed(self.their_side)
        self._machine.set_closed(self.our_side)
        return m.ConnectionClosed(clean=goodbye is not None, reason=goodbye.reason if goodbye else "")

    # --- the rules ---------------------------------------------------------------------------

    def _process(self, side: Side, msg: Any) -> bool:
        """Apply ``msg`` sent by ``side``; True to deliver it, False to drop it silently."""
        msg_type = type(msg)
        if (
            msg_type is m.ResponseChunk
            and self._streams.get(msg.stream_id) is StreamState.STREAMING
            and _OPENER[msg.stream_id & 1] is not side
            and self._machine.state(side) is SideState.OPEN
        ):
            return True  # a chunk from the responder of a streaming stream changes no state
        if msg_type in _STREAM_TYPES:
            drop = self._check_stream(side, msg)
            if drop:
                if self._machine.state(side) is not SideState.OPEN:
                    self._machine.process(side, msg_type)  # illegal outside OPEN; raises
                return False
            self._machine.process(side, msg_type)
            self._apply_stream(side, msg)
            return True
        self._machine.process(side, msg_type)
        if msg_type is m.Hello:
            self._on_hello(side, msg)
        elif msg_type is m.HelloAck:
            self._on_hello_ack(msg)
        elif msg_type is m.Goodbye:
            if side is self.their_side:
                self._peer_goodbye = msg
        elif msg_type is m.Query:
            if self._queries is None:
                self._queries = {}
            pending = self._queries.setdefault(side, set())
            if msg.query_id in pending:
                raise LocalProtocolError(f"query id {msg.query_id} is already outstanding")
            if len(pending) >= self.max_queries:
                raise LocalProtocolError(f"more than {self.max_queries} outstanding queries", ErrorCode.BUSY)
            pending.add(msg.query_id)
        elif msg_type is m.QueryResult or msg_type is m.QueryError:
            asked = self._queries.get(side.other, set()) if self._queries is not None else set()
            if msg.query_id not in asked:
                raise LocalProtocolError(f"{msg_type.__name__} for unknown query id {msg.query_id}")
            asked.discard(msg.query_id)
        return True

    def _on_hello(self, side: Side, hello: m.Hello) -> None:
        if side is self.our_side:
            if hello.role is not self.our_role:
                raise LocalProtocolError(f"our Hello says {hello.role.value}, we are {self.our_role.value}")
            self._our_hello = hello
        else:
            self._peer_hello = hello

    def _on_hello_ack(self, ack: m.HelloAck) -> None:
        ours, theirs = self._our_hello, self._peer_hello
        assert ours is not None and theirs is not None  # HelloAck needs both Hellos (HANDSHAKE_GUARDS)
        dialer, acceptor = (ours, theirs) if self.our_side is Side.DIALER else (theirs, ours)
        expected = negotiate_version(dialer, acceptor)
        if expected is None:
            raise LocalProtocolError("HelloAck although the version ranges do not overlap (send Goodbye)")
        if ack.version != expected:
            raise LocalProtocolError(f"HelloAck version {ack.version}, the ranges give {expected}")
        self._ack = ack
        self.negotiated_version = ack.version

    def _high_of(self, side: Side) -> int:
        return self._our_high if side is self.our_side else self._their_high

    def _check_stream(self, side: Side, msg: Any) -> bool:
        """Id rules for a stream message from ``side``; True if it is a late one to drop."""
        sid: int = msg.stream_id
        if type(msg) is m.Request:
            if _OPENER[sid & 1] is not side:
                raise LocalProtocolError(f"the {side.value} may not open stream {sid} (wrong parity)")
            high = self._high_of(side)
            if sid <= high:
                raise LocalProtocolError(f"stream id {sid} is not above {high} (reused)")
            if (self._our_open if side is self.our_side else self._their_open) >= self.max_streams:
                raise LocalProtocolError(f"more than {self.max_streams} open streams", ErrorCode.BUSY)
            return False
        if sid in self._streams:
            return False
        if sid <= self._high_of(_OPENER[sid & 1]):
            incoming = side is self.their_side
            cancelled = self._cancelled
            if incoming and (type(msg) is m.Cancel or (cancelled is not None and sid in cancelled)):
                return True
            raise LocalProtocolError(f"{type(msg).__name__} on finished stream {sid}")
        raise LocalProtocolError(f"{type(msg).__name__} on stream {sid}, which was never opened")

    def _apply_stream(self, side: Side, msg: Any) -> None:
        sid: int = msg.stream_id
        opener = _OPENER[sid & 1]
        ours = opener is self.our_side  # we opened the stream
        role = StreamRole.OPENER if side is opener else StreamRole.RESPONDER
        state = StreamState.IDLE if type(msg) is m.Request else self._streams[sid]
        new = stream_transition(role, state, type(msg), sid)
        if type(msg) is m.Request:  # sent by the opener (checked above)
            if ours:
                self._our_high, self._our_open = sid, self._our_open + 1
            else:
                self._their_high, self._their_open = sid, self._their_open + 1
        if new is StreamState.CLOSED:
            del self._streams[sid]
            if ours:
                self._our_open -= 1
            else:
                self._their_open -= 1
            if type(msg) is m.Cancel and side is self.our_side:
                if self._cancelled is None:
                    self._cancelled = {}
                self._cancelled[sid] = None
                if len(self._cancelled) > 4 * self.max_streams:
                    del self._cancelled[next(iter(self._cancelled))]
        else:
            self._streams[sid] = new
