"""One live node-to-node link: a sans-IO ``wire.Connection`` driven over a transport.

Lifecycle: :func:`establish` runs the verifier and the Hello exchange (and, on the acceptor,
``on_connect``) under the handshake timeout; then :meth:`NodeConnection._run` drives the link: the
reader runs in the link's own task, the keep-alive is an entry in the loop's shared wake-up heap
(:mod:`cocoon.net.wakeups`), and the link owns the notify task (from the first notify) and one task
per incoming stream or query, as a TaskGroup would. When any of them fails, or the peer says
Goodbye, or :meth:`aclose` is called, the link ends: every handler task is cancelled and awaited,
every outgoing stream and pending query fails with :class:`ConnectionLost`, the transport is
aborted, then ``on_disconnect`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from cocoon import wire
from cocoon.net.config import NetConfig
from cocoon.net.errors import (
    ConnectionLost,
    HandshakeRefused,
    LinkClosed,
    NetError,
    QueryFailed,
    TooBusy,
    map_exceptions,
    translate,
)
from cocoon.net.flag import Flag
from cocoon.net.peer import PeerInfo
from cocoon.net.streams import IncomingStream, OutgoingStream
from cocoon.net.transport import Transport
from cocoon.net.wakeups import Wakeup, cancel, schedule
from cocoon.wire.messages import MAX_TEXT

__all__ = ["Handler", "NodeConnection", "Verifier", "establish", "refusal_reason"]

log = logging.getLogger("cocoon.net")

Verifier = Callable[[bytes], object]
_K = TypeVar("_K")
_V = TypeVar("_V")
_ids = itertools.count(1)  # process-unique connection ids, like object ids (not application state)
_NOTIFY_QUEUE = 256
_FLUSH_AT = 64 * 1024  # buffered frame bytes that force a flush before waiting for the transport
_ACTIVE = (wire.StreamState.OPEN, wire.StreamState.STREAMING)
_PAUSE_AT = 512 * 1024  # received bytes a busy reader may fall behind by before the socket pauses
_TO_OUTGOING = frozenset({wire.ResponseHead, wire.ResponseChunk, wire.ResponseEnd, wire.StreamError})
# Handled the same way by both paths, without waiting.
_SYNC_KINDS = frozenset({wire.Request, wire.Cancel, wire.Pong, wire.Query, wire.QueryResult, wire.QueryError})


class _NoEntries(dict[Any, Any]):
    """The one empty table shared by every link that has not used its own yet (three dicts were
    ~0.2 KiB per idle link end): reads (get, pop with a default, clear) work; adding is a bug,
    refused by each of dict's own ways to add (they do not go through ``__setitem__``)."""

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("the shared empty table: add to the link's own (_own)")

    __setitem__ = setdefault = update = __ior__ = _refuse


_NO_ENTRIES = _NoEntries()


def _own(table: dict[_K, _V]) -> dict[_K, _V]:
    """``table``, or a new dict of the link's own in place of the shared empty one."""
    return {} if table is _NO_ENTRIES else table


class Handler(Protocol):
    """What a service implements to live on a link. Each callback runs in a task owned by the link."""

    async def on_connect(self, conn: NodeConnection) -> None:
        """After the Hello exchange; raising refuses the peer (it gets HandshakeRefused).

        On the acceptor it runs before HelloAck, so it cannot send; on the dialer it runs once the
        link is open and may query. Streams, queries and notifies from the peer wait until it returns.
        """

    async def on_stream(self, conn: NodeConnection, stream: IncomingStream) -> None:
        """Serve one request stream. Cancelled if the peer cancels it or the link dies."""

    async def on_query(
        self, conn: NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Answer a query; raise QueryFailed(code, message) to answer with an error."""
        ...

    async def on_notify(self, conn: NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        """A one-way message. Called in arrival order, one at a time."""

    async def on_disconnect(self, conn: NodeConnection, exc: BaseException | None) -> None:
        """The link is gone; ``exc`` is None after a graceful close."""


class _LinkDone(Exception):
    """Internal: a link task that ends with it ends the link (the reason is in ``_error``)."""


class NodeConnection:
    """A connected, verified peer. Create with :func:`dial`, :func:`serve` or :func:`memory_pair`."""

    # Slots: an idle link is mostly this object; its 40-odd attributes were a 1.6 KiB dict.
    __slots__ = (
        "__weakref__",
        "_attestation",
        "_closing",
        "_done",
        "_error",
        "_flush_scheduled",
        "_goodbye_reason",
        "_handler",
        "_held",
        "_held_error",
        "_incoming",
        "_interrupted",
        "_keepalive",
        "_last_received",
        "_loop",
        "_nonce",
        "_notifies",
        "_outbuf",
        "_outbuf_size",
        "_outgoing",
        "_parked",
        "_peer",
        "_ping",
        "_push",
        "_queries",
        "_read_error",
        "_reading_paused",
        "_ready",
        "_rtt",
        "_runner",
        "_slot_free",
        "_stopping",
        "_streams_opened",
        "_streams_served",
        "_tasks",
        "_transport",
        "_wire",
        "config",
        "dialer",
        "id",
        "local_info",
        "local_role",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        dialer: bool,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig,
        attestation: object,
    ) -> None:
        self.id = next(_ids)
        self.config = config
        self.local_role = role
        self.local_info: Mapping[str, Any] = dict(info)
        self.dialer = dialer
        self._transport = transport
        self._handler = handler
        self._attestation = attestation
        self._wire = wire.Connection(
            our_role=role, dialer=dialer, max_frame_size=config.max_frame_size, max_streams=config.max_streams
        )
        self._peer: PeerInfo | None = None
        self._loop = asyncio.get_running_loop()
        self._last_received = self._loop.time()
        self._ping: tuple[int, float] | None = None  # (nonce, sent at)
        self._nonce = 0  # the last Ping's
        self._keepalive: Wakeup | None = None  # the next keep-alive check, while running
        self._rtt: float | None = None
        self._outgoing: dict[int, OutgoingStream] = _NO_ENTRIES
        self._incoming: dict[int, tuple[IncomingStream, asyncio.Task[None]]] = _NO_ENTRIES
        self._queries: dict[int, asyncio.Future[Mapping[str, Any]]] = _NO_ENTRIES
        self._notifies: asyncio.Queue[wire.Notify] | None = None  # made with the first notify
        self._slot_free = Flag()
        self._ready = Flag()  # on_connect done: handler callbacks may run
        self._done = Flag()  # fully closed and released
        self._outbuf: list[bytes] | None = None  # frames not yet flushed (a list only while some wait)
        self._outbuf_size = 0
        self._flush_scheduled = False
        # Push mode (a transport with set_sink): events are dispatched as the bytes arrive, in the
        # transport's callback, while the reader task is parked; it only wakes for what must wait.
        self._push = False
        self._parked: asyncio.Future[None] | None = None
        self._held: wire.Message | wire.ConnectionClosed | None = None
        self._held_error: BaseException | None = None  # raised at once (a protocol error)
        self._read_error: BaseException | None = None  # raised once what arrived before it is read
        self._reading_paused = False
        # The task running the link (the reader) and its handler tasks (a set from the first one):
        # a TaskGroup per link was ~0.5 KiB per idle end.
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        self._interrupted = False  # the runner was cancelled to end the link (ours to swallow)
        self._stopping = False  # the reader is done: handler tasks are being cancelled
        self._closing = False
        self._error: NetError | None = None
        self._goodbye_reason: str | None = None
        self._streams_opened = 0
        self._streams_served = 0

    # --- public ----------------------------------------------------------------------------------

    @property
    def peer(self) -> PeerInfo:
        if self._peer is None:
            raise LinkClosed("the handshake has not completed")
        return self._peer

    @property
    def closed(self) -> bool:
        return self._closing or self._done.is_set()

    @property
    def error(self) -> NetError | None:
        """Why the link broke (None while it is up, or after a graceful close)."""
        return self._error

    def stream_state(self, stream_id: int) -> wire.StreamState:
        return self._wire.stream_state(stream_id)

    async def open_stream(
        self,
        *,
        endpoint: str,
        model: str,
        body: bytes,
        max_coefficient: int,
        max_tokens: int,
        timeout: float,
        request_id: bytes,
        meta: Mapping[str, Any] | None = None,
    ) -> OutgoingStream:
        """Send a Request on a new stream. Waits for a free slot if ``max_streams`` are open."""
        self._check_usable()
        while not self._wire.can_open_stream():
            self._slot_free.clear()
            await self._slot_free.wait()
            self._check_usable()
        request = wire.Request(
            stream_id=self._wire.next_stream_id(),
            endpoint=endpoint,
            model=model,
            body=body,
            max_coefficient=max_coefficient,
            max_tokens=max_tokens,
            timeout=timeout,
            request_id=request_id,
            meta=meta or {},
        )
        payload = wire.encode_payload(request)
        if len(payload) > self.config.max_frame_size:
            # The caller's mistake, not the link's: refuse it before the wire state changes.
            raise wire.LocalProtocolError(
                f"request of {len(body)} body bytes does not fit one frame", wire.ErrorCode.BAD_REQUEST
            )
        stream = OutgoingStream(self, request)
        self._write(request, payload)
        self._outgoing = _own(self._outgoing)
        self._outgoing[request.stream_id] = stream
        self._streams_opened += 1
        try:
            await self._drain()
        except BaseException:
            # Nobody will read this stream: tell the peer (synchronously, it cannot be cancelled).
            _abandon(self, stream)
            raise
        return stream

    async def query(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Ask the peer and wait for its answer. Set deadlines with ``asyncio.timeout``."""
        self._check_usable()
        if not self._wire.can_send_query():
            raise TooBusy(f"{self._wire.max_queries} queries already await answers")
        msg = wire.Query(query_id=self._wire.next_query_id(), method=method, params=params)
        future: asyncio.Future[Mapping[str, Any]] = self._loop.create_future()
        self._queries = _own(self._queries)
        self._queries[msg.query_id] = future
        try:
            await self._send(msg)
            return await future
        finally:
            self._queries.pop(msg.query_id, None)

    async def notify(self, method: str, params: Mapping[str, Any]) -> None:
        self._check_usable()
        await self._send(wire.Notify(method=method, params=params))

    async def aclose(self, reason: str = "") -> None:
        """Say Goodbye (best effort, bounded by ``close_timeout``) and release everything. Idempotent."""
        if not self._closing:
            self._closing = True
            try:
                if self._error is None and self._wire.our_state in (
                    wire.SideState.IDLE,
                    wire.SideState.HELLO_SENT,
                    wire.SideState.OPEN,
                ):
                    with contextlib.suppress(NetError, TimeoutError):
                        async with asyncio.timeout(self.config.close_timeout):
                            await self._send(wire.Goodbye(reason=reason[:MAX_TEXT]), closing=True)
                self._flush()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.config.close_timeout):
                        await self._transport.aclose()
            finally:
                self._transport.abort()
                if self._runner is None:
                    self._done.set()  # never ran: nothing else will release it
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._done.wait()

    def statistics(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.local_role.value,
            "peer_role": self._peer.role.value if self._peer else None,
            "address": self._transport.address,
            "state": self._wire.state.value,
            "version": self._wire.negotiated_version,
            "streams_open": self._wire.open_streams,
            "streams_opened": self._streams_opened,
            "streams_served": self._streams_served,
            "queries_pending": len(self._queries),
            "bytes_in": self._wire.bytes_received,
            "bytes_out": self._wire.bytes_sent,
            "rtt": self._rtt,
            "closed": self.closed,
        }

    def __repr__(self) -> str:
        peer = self._peer.role.value if self._peer else "?"
        return f"<NodeConnection #{self.id} {self.local_role.value}->{peer} {self._transport.address}>"

    # --- sending ---------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._error is not None:
            raise ConnectionLost(f"link broken: {self._error}") from self._error
        if self.closed:
            raise LinkClosed("the connection is closed")

    def _write(self, msg: wire.Message, payload: bytes | None = None) -> None:
        """Frame and buffer one message (atomic: no await between the state change and the write).

        Frames written in the same loop iteration are coalesced into one TLS write (``_flush`` runs
        via ``call_soon``, or at once past ``_FLUSH_AT`` bytes in ``_drain``).
        """
        try:
            data = self._wire.send(msg, payload=payload)
        except wire.WireError as exc:
            error = ConnectionLost(f"protocol error on send: {exc}")
            self._break(error)
            raise error from exc
        if self._outbuf is None:
            self._outbuf = [data]
        else:
            self._outbuf.append(data)
        self._outbuf_size += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbuf, self._outbuf = self._outbuf, None
        if not outbuf:
            return
        data = b"".join(outbuf) if len(outbuf) > 1 else outbuf[0]
        self._outbuf_size = 0
        if self._error is not None:
            return
        try:
            self._transport.write(data)
        except Exception as exc:
            self._break(translate(exc) or ConnectionLost(f"write failed: {exc!r}"))

    async def _drain(self) -> None:
        if self._outbuf_size >= _FLUSH_AT:
            self._flush()
        if self._error is not None:
            raise ConnectionLost(str(self._error)) from self._error
        try:
            await self._transport.drain()
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            self._break(error)
            raise error from exc

    async def _send(self, msg: wire.Message, *, closing: bool = False) -> None:
        if not closing:
            self._check_usable()
        elif self._error is not None:
            raise ConnectionLost(str(self._error))
        self._write(msg)
        await self._drain()

    def _break(self, exc: NetError) -> None:
        """Record why the link broke and abort the transport (the reader then ends the group)."""
        if self._error is None and not self._done.is_set():
            self._error = exc
        self._transport.abort()

    async def _cancel_outgoing(self, stream: OutgoingStream, reason: str) -> None:
        if self._outgoing.pop(stream.stream_id, None) is not None:
            self._slot_free.set()
        if self._error is None and self._wire.stream_state(stream.stream_id) in _ACTIVE:
            with contextlib.suppress(NetError):
                await self._send(
                    wire.Cancel(stream_id=stream.stream_id, reason=reason[:MAX_TEXT]), closing=True
                )

    # --- receiving -------------------------------------------------------------------------------

    # --- push mode -------------------------------------------------------------------------------

    def _start_push(self) -> None:
        set_sink = getattr(self._transport, "set_sink", None)
        if set_sink is not None:
            self._push = True
            set_sink(self)

    def _on_data(self, data: bytes) -> None:
        """Bytes from the transport (``b""``: EOF). Dispatched here if the reader is parked."""
        self._last_received = self._loop.time()
        waiter = self._parked
        if waiter is None or waiter.done():
            try:
                self._wire.receive_data(data)
            except Exception as exc:
                self._held_error = exc
                return
            # The reader is busy (a full stream, a slow notify): stop reading past a bound.
            if self._wire.buffered > _PAUSE_AT and not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()  # type: ignore[attr-defined]
            return
        try:
            self._wire.receive_data(data)
            while True:
                event = self._wire.next_event()
                if event is wire.NEED_DATA:
                    return
                assert not isinstance(event, type)
                if not self._dispatch_now(event):
                    self._held = event
                    break
        except Exception as exc:  # the reader raises it, under the link's guard
            self._held_error = exc
        if not waiter.done():
            waiter.set_result(None)

    def _on_read_error(self, exc: BaseException) -> None:
        if self._read_error is None:
            self._read_error = exc
        waiter = self._parked
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _dispatch_now(self, event: wire.Message | wire.ConnectionClosed) -> bool:
        """:meth:`_dispatch` for what needs no waiting; False: the reader task must handle it."""
        kind = type(event)
        if kind in _TO_OUTGOING:
            stream = self._outgoing.get(event.stream_id)  # type: ignore[union-attr]
            if stream is None:
                return True
            if not stream._offer(event):  # type: ignore[arg-type]
                return False
            if kind is wire.ResponseEnd or kind is wire.StreamError:
                self._outgoing.pop(event.stream_id, None)  # type: ignore[union-attr]
                self._slot_free.set()
            return True
        if kind in _SYNC_KINDS:
            _sync_dispatch(self, event)  # type: ignore[arg-type]
            return True
        if kind is wire.Notify and self._notifies is not None and not self._notifies.full():
            self._notifies.put_nowait(event)  # type: ignore[arg-type]
            return True
        return False  # Goodbye, the end, Ping (answers wait for room), a first or queued-up Notify

    async def _dispatch(self, event: wire.Message) -> None:
        if isinstance(event, wire.ResponseHead | wire.ResponseChunk | wire.ResponseEnd | wire.StreamError):
            stream = self._outgoing.get(event.stream_id)
            if stream is not None:
                await stream._deliver(event)
                if isinstance(event, wire.ResponseEnd | wire.StreamError):
                    self._outgoing.pop(event.stream_id, None)
                    self._slot_free.set()
        elif type(event) in _SYNC_KINDS:
            _sync_dispatch(self, event)  # type: ignore[arg-type]
        elif isinstance(event, wire.Ping):
            await self._send(wire.Pong(nonce=event.nonce))
        elif isinstance(event, wire.Notify):
            if self._notifies is None:
                # Most links never carry one: the queue and its task cost ~3 KiB per idle link.
                self._notifies = asyncio.Queue(_NOTIFY_QUEUE)
                _spawn(self, _guard(self, _notify_loop(self, self._notifies)), f"{self!r} notifies")
            await self._notifies.put(event)
        else:  # Hello/HelloAck after the handshake are refused by the wire state machine
            raise ConnectionLost(f"unexpected {type(event).__name__}")

    # --- running ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Drive the link until it ends; then release everything and call on_disconnect.

        The reader runs in this task and this frame (a task and two coroutines less per idle
        link); whatever ends it ends the link, which cancels the handler tasks.
        """
        task = self._runner = asyncio.current_task()
        assert task is not None
        try:
            try:
                self._start_push()
                _keepalive_start(self)
                while True:
                    if not self._push:
                        event = await _next_event(self)
                    elif (pushed := _pushed_event(self)) is not None:
                        event = pushed
                    else:  # parked until the transport's callback has something for the reader
                        self._parked = waiter = self._loop.create_future()
                        try:
                            await waiter
                        finally:
                            self._parked = None
                        continue
                    if isinstance(event, wire.ConnectionClosed | wire.Goodbye):
                        _reading_ends(self, event)
                        break
                    await self._dispatch(event)
            except Exception as exc:
                _ended_by(self, exc)
            except asyncio.CancelledError:
                if not self._interrupted or task.uncancel() > 0:
                    raise  # not (only) ours: passed on once the handlers are done
            finally:
                await _stop_tasks(self)
        finally:
            if self._keepalive is not None:
                cancel(self._loop, self._keepalive)
                self._keepalive = None
            self._closing = True
            self._transport.abort()
            _release(self)
            self._done.set()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.close_timeout):
                    await self._handler.on_disconnect(self, self._error)

    def _start(self) -> None:
        """Run the link in its own task (dialled connections; the server runs it in its group)."""
        self._runner = asyncio.create_task(self._run(), name=f"{self!r} runner")


async def establish(
    transport: Transport,
    *,
    dialer: bool,
    role: wire.Role,
    info: Mapping[str, Any],
    handler: Handler,
    verifier: Verifier | None,
    config: NetConfig,
) -> NodeConnection:
    """Verify the peer certificate and exchange Hellos; the link is returned ready but not running.

    Raises HandshakeRefused (verifier, versions, on_connect, peer's Goodbye), NetTimeout or
    ConnectError; the transport is aborted on any failure.
    """
    conn: NodeConnection | None = None
    try:
        with map_exceptions(connecting=True):
            async with asyncio.timeout(config.handshake_timeout):
                attestation = _verify(transport, verifier)
                conn = NodeConnection(
                    transport,
                    dialer=dialer,
                    role=role,
                    info=info,
                    handler=handler,
                    config=config,
                    attestation=attestation,
                )
                try:
                    if dialer:
                        await _dialer_hello(conn)
                    else:
                        await _acceptor_hello(conn)
                except ConnectionLost as exc:
                    # A reset in the middle of the handshake is how TLS 1.3 peers refuse a certificate.
                    raise HandshakeRefused(f"the link broke during the handshake: {exc}") from exc
        return conn
    except BaseException:
        transport.abort()
        if conn is not None:
            conn._closing = True
            conn._done.set()
        raise


def refusal_reason(exc: Exception) -> str:
    """What the peer is told when on_connect raises: a NetError's text, never a bug's internals."""
    if isinstance(exc, NetError):
        return f"refused: {exc}"
    log.error("on_connect failed; refusing the peer", exc_info=exc)
    return "refused: internal error"


def _verify(transport: Transport, verifier: Verifier | None) -> object:
    if verifier is None:
        return None
    der = transport.peer_certificate()
    if der is None:
        raise HandshakeRefused("the peer presented no certificate")
    try:
        return verifier(der)
    except Exception as exc:
        raise HandshakeRefused(f"peer certificate refused: {exc}") from exc


def _our_hello(conn: NodeConnection) -> wire.Hello:
    cfg = conn.config
    hello = wire.Hello(
        role=conn.local_role, min_version=cfg.min_version, max_version=cfg.max_version, info=conn.local_info
    )
    conn.local_info = hello.info  # the Hello's own copy, which the wire keeps: one per link, not two
    return hello


async def _handshake_event(conn: NodeConnection) -> wire.Message:
    event = await _next_event(conn)
    if isinstance(event, wire.ConnectionClosed):
        raise HandshakeRefused("the peer closed the connection during the handshake")
    if isinstance(event, wire.Goodbye):
        raise HandshakeRefused(f"refused by the peer: {event.reason}")
    return event


async def _dialer_hello(conn: NodeConnection) -> None:
    await conn._send(_our_hello(conn))
    peer_hello = await _handshake_event(conn)
    assert isinstance(peer_hello, wire.Hello)  # the wire machine allows nothing else here
    ack = await _handshake_event(conn)
    assert isinstance(ack, wire.HelloAck)
    conn._peer = PeerInfo(
        role=peer_hello.role,
        version=ack.version,
        info=peer_hello.info,
        attestation=conn._attestation,
        address=conn._transport.address,
    )


async def _acceptor_hello(conn: NodeConnection) -> None:
    peer_hello = await _handshake_event(conn)
    if not isinstance(peer_hello, wire.Hello):  # pragma: no cover - the wire machine enforces it
        raise HandshakeRefused("the dialer did not start with Hello")
    ours = _our_hello(conn)
    await conn._send(ours)
    version = wire.negotiate_version(peer_hello, ours)
    if version is None:
        reason = (
            f"no common protocol version: ours {ours.min_version}..{ours.max_version}, "
            f"yours {peer_hello.min_version}..{peer_hello.max_version}"
        )
        await _refuse(conn, reason)
        raise HandshakeRefused(reason)
    conn._peer = PeerInfo(
        role=peer_hello.role,
        version=version,
        info=peer_hello.info,
        attestation=conn._attestation,
        address=conn._transport.address,
    )
    try:
        await conn._handler.on_connect(conn)
    except Exception as exc:
        reason = refusal_reason(exc)
        await _refuse(conn, reason)
        raise HandshakeRefused(reason) from exc
    await conn._send(wire.HelloAck(version=version, info={}))
    conn._ready.set()


async def _refuse(conn: NodeConnection, reason: str) -> None:
    with contextlib.suppress(NetError, TimeoutError):
        async with asyncio.timeout(conn.config.close_timeout):
            await conn._send(wire.Goodbye(reason=reason[:MAX_TEXT]))
    conn._flush()  # hand it to the socket now: the transport is aborted right after


# --- handler tasks and keep-alive of a link (module functions: the class stays one screenful) ---


def _on_cancel(conn: NodeConnection, event: wire.Cancel) -> None:
    entry = conn._incoming.pop(event.stream_id, None)
    if entry is not None:
        incoming, task = entry
        incoming.cancel_reason = event.reason or "cancelled by peer"
        incoming.cancelled.set()
        task.cancel()
        return
    stream = conn._outgoing.pop(event.stream_id, None)
    if stream is not None:
        conn._slot_free.set()
        reason = f"cancelled by peer: {event.reason}" if event.reason else "cancelled by peer"
        # Terminal messages never wait for room, so this completes at once.
        error = wire.StreamError(stream_id=event.stream_id, code=wire.ErrorCode.CANCELLED, message=reason)
        stream._items.append(error)
        stream._changed.set()


async def _serve_stream(conn: NodeConnection, stream: IncomingStream) -> None:
    try:
        await conn._ready.wait()
        await conn._handler.on_stream(conn, stream)
    except asyncio.CancelledError:
        # Cancelled by our side (service stopping), not by the peer: tell the requester, or it
        # would wait for an answer that never comes.
        if not stream.finished and not stream.cancelled.is_set():
            with contextlib.suppress(Exception):
                await stream.cancel("the responder stopped")
        raise
    except NetError as exc:
        if not stream.cancelled.is_set():
            log.info("%r stream %d: %s", conn, stream.stream_id, exc)
            await _fail_stream(conn, stream, f"stream failed: {exc}")
    except Exception:
        log.exception("%r: on_stream failed", conn)
        await _fail_stream(conn, stream, "internal error in the handler")
    else:
        await _fail_stream(conn, stream, "the handler returned without ending the stream")
    finally:
        conn._incoming.pop(stream.stream_id, None)


async def _fail_stream(conn: NodeConnection, stream: IncomingStream, message: str) -> None:
    if not stream.finished and not stream.cancelled.is_set():
        with contextlib.suppress(NetError, wire.WireError):
            await stream.send_error(wire.ErrorCode.INTERNAL, message)


async def _answer(conn: NodeConnection, query: wire.Query) -> None:
    answer: wire.Message
    try:
        await conn._ready.wait()
        result = await conn._handler.on_query(conn, query.method, query.params)
        answer = wire.QueryResult(query_id=query.query_id, result=result)
    except QueryFailed as exc:
        answer = wire.QueryError(query_id=query.query_id, code=exc.code, message=exc.message[:MAX_TEXT])
    except Exception:
        log.exception("%r: on_query(%s) failed", conn, query.method)
        answer = wire.QueryError(
            query_id=query.query_id, code=wire.ErrorCode.INTERNAL, message="internal error"
        )
    with contextlib.suppress(NetError):
        await conn._send(answer)


async def _notify_loop(conn: NodeConnection, notifies: asyncio.Queue[wire.Notify]) -> None:
    await conn._ready.wait()
    while True:
        msg = await notifies.get()
        try:
            await conn._handler.on_notify(conn, msg.method, msg.params)
        except Exception:
            log.exception("%r: on_notify(%s) failed", conn, msg.method)


def _keepalive_start(conn: NodeConnection) -> None:
    loop = conn._loop
    when = _keepalive_tick(conn, loop.time())
    if when is not None:
        conn._keepalive = schedule(loop, when, conn, _keepalive_tick)


def _keepalive_tick(conn: NodeConnection, now: float) -> float | None:
    """Ping after ``ping_interval`` of silence; the link is dead after ``idle_timeout`` of it.

    Not a task nor a timer per link: an entry in the loop's shared wake-up heap, called again at
    the time returned (None: no more). The Ping is written without waiting for room (it is tiny
    and at most one is outstanding), so a stalled socket cannot hold back the idle timeout either.
    """
    if conn._done.is_set():
        return None
    cfg = conn.config
    idle = now - conn._last_received
    if idle >= cfg.idle_timeout:
        _end_link(
            conn, ConnectionLost(f"nothing received for {idle:.1f}s (idle timeout {cfg.idle_timeout}s)")
        )
        return None
    if idle >= cfg.ping_interval and conn._ping is None:
        try:
            conn._check_usable()
            conn._nonce += 1
            conn._ping = (conn._nonce, now)
            conn._write(wire.Ping(nonce=conn._nonce))
        except NetError as exc:
            _end_link(conn, exc)
            return None
    wake = conn._last_received + cfg.idle_timeout
    if conn._ping is None:
        wake = min(wake, conn._last_received + cfg.ping_interval)
    return max(wake, now + 0.005)


def _end_link(conn: NodeConnection, exc: NetError) -> None:
    """End the running link with ``exc`` from a callback, as a failing link task would."""
    if conn._runner is None or conn._stopping:
        return
    _ended_by(conn, exc)
    _interrupt(conn)


def _interrupt(conn: NodeConnection) -> None:
    """Cancel the link's runner (its reader), once: the link ends as if the reader had failed."""
    if conn._runner is not None and not conn._stopping and not conn._interrupted:
        conn._interrupted = True
        conn._runner.cancel()


def _spawn(conn: NodeConnection, coro: Any, name: str) -> asyncio.Task[None]:
    """A handler task owned by the link (cancelled and awaited when it ends)."""
    if conn._stopping:
        coro.close()
        raise RuntimeError(f"{conn!r} is ending")
    task: asyncio.Task[None] = conn._loop.create_task(coro, name=name)
    if conn._tasks is None:
        conn._tasks = set()
    conn._tasks.add(task)
    task.add_done_callback(functools.partial(_task_done, conn))
    return task


def _task_done(conn: NodeConnection, task: asyncio.Task[None]) -> None:
    """A handler task ended: one that failed (or ended with the link, _LinkDone) ends the link."""
    if conn._tasks is not None:
        conn._tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, Exception) and not isinstance(exc, _LinkDone):
        _ended_by(conn, exc)
    _interrupt(conn)


async def _stop_tasks(conn: NodeConnection) -> None:
    """Cancel the handler tasks and wait until all have ended (a handler may still tell its peer)."""
    conn._stopping = True
    tasks = conn._tasks
    if not tasks:
        return
    for task in list(tasks):
        task.cancel()
    cancelled: asyncio.CancelledError | None = None
    while tasks:
        try:
            await asyncio.wait(list(tasks))
        except asyncio.CancelledError as exc:  # the runner is cancelled again: still wait for them
            cancelled = exc
    conn._tasks = None
    if cancelled is not None:
        raise cancelled


def _abandon(conn: NodeConnection, stream: OutgoingStream) -> None:
    if conn._outgoing.pop(stream.stream_id, None) is not None:
        conn._slot_free.set()
    if conn._error is None and conn._wire.stream_state(stream.stream_id) in _ACTIVE:
        with contextlib.suppress(NetError):
            conn._write(wire.Cancel(stream_id=stream.stream_id, reason="abandoned"))


async def _guard(conn: NodeConnection, coro: Any) -> None:
    """Run one of the link's loops; whatever ends it ends the link."""
    try:
        await coro
    except Exception as exc:
        _ended_by(conn, exc)
    raise _LinkDone


def _ended_by(conn: NodeConnection, exc: Exception) -> None:
    """Record why one of the link's loops failed (then the link ends)."""
    if isinstance(exc, NetError):
        if not conn._closing:
            conn._break(exc)
    elif isinstance(exc, wire.WireError):
        conn._break(ConnectionLost(f"protocol error: {exc}"))
    else:
        log.exception("%r: internal error", conn, exc_info=exc)
        conn._break(ConnectionLost(f"internal error: {exc!r}"))


async def _next_event(conn: NodeConnection) -> wire.Message | wire.ConnectionClosed:
    """The next message, reading from the transport as needed (pull mode: the handshake, and
    transports without ``set_sink``)."""
    while True:
        try:
            event = conn._wire.next_event()
            if event is wire.NEED_DATA:
                data = await conn._transport.receive()
                conn._last_received = conn._loop.time()
                conn._wire.receive_data(data)
                continue
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc
        assert not isinstance(event, type)
        return event


def _reading_ends(conn: NodeConnection, event: wire.ConnectionClosed | wire.Goodbye) -> None:
    """The peer's Goodbye, or the end of its bytes: ConnectionLost if that came without Goodbye."""
    if isinstance(event, wire.Goodbye):
        conn._goodbye_reason = event.reason
        log.debug("%r: peer said goodbye: %s", conn, event.reason)
    elif not event.clean and not conn._closing:
        raise ConnectionLost("the peer closed the connection without Goodbye")


def _pushed_event(conn: NodeConnection) -> wire.Message | wire.ConnectionClosed | None:
    """Push mode: what the reader must handle next; None: nothing, park (reading resumed)."""
    try:
        if conn._held_error is not None:
            raise conn._held_error
        held = conn._held
        if held is not None:
            conn._held = None
            return held
        event = conn._wire.next_event()
        if event is wire.NEED_DATA and conn._read_error is not None:
            raise conn._read_error
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc
    if event is not wire.NEED_DATA:
        assert not isinstance(event, type)
        return event
    if conn._reading_paused:
        conn._reading_paused = False
        conn._transport.resume_reading()  # type: ignore[attr-defined]
    return None


def _sync_dispatch(
    conn: NodeConnection,
    event: wire.Request | wire.Cancel | wire.Pong | wire.Query | wire.QueryResult | wire.QueryError,
) -> None:
    if isinstance(event, wire.Request):
        incoming = IncomingStream(conn, event)
        task = _spawn(conn, _serve_stream(conn, incoming), f"{conn!r} stream {event.stream_id}")
        conn._incoming = _own(conn._incoming)
        conn._incoming[event.stream_id] = (incoming, task)
        conn._streams_served += 1
    elif isinstance(event, wire.Cancel):
        _on_cancel(conn, event)
    elif isinstance(event, wire.Pong):
        if conn._ping is not None and conn._ping[0] == event.nonce:
            conn._rtt = conn._loop.time() - conn._ping[1]
            conn._ping = None
    elif isinstance(event, wire.Query):
        _spawn(conn, _answer(conn, event), f"{conn!r} query {event.method}")
    else:
        future = conn._queries.get(event.query_id)
        if future is not None and not future.done():
            if isinstance(event, wire.QueryResult):
                future.set_result(event.result)
            else:
                future.set_exception(QueryFailed(event.code, event.message))


def _release(conn: NodeConnection) -> None:
    """Fail or cancel everything still open on the ended link, saying why."""
    reason = str(conn._error) if conn._error else (conn._goodbye_reason or "connection closed")
    for stream in list(conn._outgoing.values()):
        stream._fail(ConnectionLost(f"link lost mid-stream: {reason}"))
    conn._outgoing.clear()
    for future in conn._queries.values():
        if not future.done():
            future.set_exception(ConnectionLost(f"link lost before the answer: {reason}"))
    for incoming, _ in conn._incoming.values():
        incoming.cancel_reason = incoming.cancel_reason or f"link lost: {reason}"
        incoming.cancelled.set()
    conn._incoming.clear()
    conn._slot_free.set()
