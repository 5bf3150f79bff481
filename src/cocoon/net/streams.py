"""The two ends of a request stream as the services see them.

:class:`OutgoingStream` (we sent the Request) is an async iterator of ResponseHead, ResponseChunk…,
then exactly one ResponseEnd or StreamError, after which iteration stops. If the link dies first it
raises :class:`ConnectionLost` (after anything already received). A Cancel from the peer arrives as
``StreamError(code=CANCELLED)``. Its queue is bounded (``NetConfig.stream_buffer`` bytes): while it
is full the connection's reader waits (TCP backpressure to the sender); a reader that takes nothing
for ``stall_timeout`` gets its stream cancelled rather than stall every other stream on the link.

:class:`IncomingStream` (the peer sent the Request) is what ``Handler.on_stream`` answers through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from cocoon import wire
from cocoon.net.config import NetConfig
from cocoon.net.errors import ConnectionLost, NetError, StreamCancelled
from cocoon.net.peer import PeerInfo
from cocoon.wire.messages import MAX_TEXT, trusted_chunk
from cocoon.wire.state import StreamRole, stream_transition

__all__ = ["IncomingStream", "OutgoingStream", "ResponseEvent", "StreamLink"]

ResponseEvent = wire.ResponseHead | wire.ResponseChunk | wire.ResponseEnd | wire.StreamError
_ENVELOPE = 64  # bytes counted per queued message besides its data


class StreamLink(Protocol):
    """What a stream needs from the link it lives on (the connection passes itself in)."""

    @property
    def config(self) -> NetConfig: ...

    @property
    def peer(self) -> PeerInfo: ...

    @property
    def closed(self) -> bool: ...

    @property
    def error(self) -> NetError | None: ...

    def stream_state(self, stream_id: int) -> wire.StreamState: ...

    async def _send(self, msg: wire.Message, *, closing: bool = False) -> None: ...

    async def _cancel_outgoing(self, stream: OutgoingStream, reason: str) -> None: ...


def _cost(msg: ResponseEvent) -> int:
    return _ENVELOPE + (len(msg.data) if isinstance(msg, wire.ResponseChunk) else 0)


class OutgoingStream:
    """A request we sent and its answer, as an async iterator of response events."""

    def __init__(self, conn: StreamLink, request: wire.Request) -> None:
        self._conn = conn
        self.request = request
        self._items: deque[ResponseEvent] = deque()
        self._queued = 0
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._error: NetError | None = None
        self._done = False  # the consumer saw the end, or we cancelled

    @property
    def stream_id(self) -> int:
        return self.request.stream_id

    @property
    def request_id(self) -> bytes:
        return self.request.request_id

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def ready(self) -> bool:
        """An event has already arrived and the next ``__anext__`` returns it without waiting.

        A relay uses it to write everything that has arrived in one send, never to wait for more.
        """
        return bool(self._items)

    @property
    def peer(self) -> PeerInfo:
        """The node answering this stream (its attestation is what the link's verifier returned)."""
        return self._conn.peer

    def __aiter__(self) -> OutgoingStream:
        return self

    async def __anext__(self) -> ResponseEvent:
        while not self._items:
            if self._done:
                raise StopAsyncIteration
            if self._error is not None:
                self._done = True
                raise type(self._error)(str(self._error)) from self._error
            self._changed.clear()
            await self._changed.wait()
        msg = self._items.popleft()
        self._queued -= _cost(msg)
        if self._queued < self._conn.config.stream_buffer:
            self._room.set()
        if isinstance(msg, wire.ResponseEnd | wire.StreamError):
            self._done = True
        return msg

    async def cancel(self, reason: str = "") -> None:
        """Abandon the stream: the peer gets Cancel, late data is dropped. Idempotent, never raises."""
        if self._done:
            return
        self._done = True
        self._items.clear()
        self._changed.set()
        self._room.set()
        await self._conn._cancel_outgoing(self, reason)

    async def __aenter__(self) -> OutgoingStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel("abandoned by the caller")

    # --- called by the connection ------------------------------------------------------------

    def _offer(self, msg: ResponseEvent) -> bool:
        """Queue ``msg`` now if there is room (or it is terminal, or the stream is over); else False."""
        if self._done:
            return True
        if self._queued >= self._conn.config.stream_buffer and not isinstance(
            msg, wire.ResponseEnd | wire.StreamError
        ):
            return False  # full: the connection's reader waits in _deliver
        self._items.append(msg)
        self._queued += _cost(msg)
        self._changed.set()
        return True

    async def _deliver(self, msg: ResponseEvent) -> None:
        if self._done:
            return
        terminal = isinstance(msg, wire.ResponseEnd | wire.StreamError)
        # The terminal message is always taken (one small item): the stream is over either way.
        if not terminal:
            limit = self._conn.config.stream_buffer
            while self._queued >= limit and not self._done:
                self._room.clear()
                try:
                    async with asyncio.timeout(self._conn.config.stall_timeout):
                        await self._room.wait()
                except TimeoutError:
                    stall = self._conn.config.stall_timeout
                    self._fail(StreamCancelled(f"stream {self.stream_id}: reader took no data for {stall}s"))
                    await self._conn._cancel_outgoing(self, "reader too slow")
                    return
            if self._done:
                return
        self._items.append(msg)
        self._queued += _cost(msg)
        self._changed.set()

    def _fail(self, exc: NetError) -> None:
        if self._error is None:
            self._error = exc
        self._changed.set()
        self._room.set()


class IncomingStream:
    """A request the peer sent; answer with head → chunks → end, or an error at any point."""

    def __init__(self, conn: StreamLink, request: wire.Request) -> None:
        self._conn = conn
        self.request = request
        self.cancelled = asyncio.Event()  # set when the peer cancels or the link drops
        self.cancel_reason: str | None = None

    @property
    def stream_id(self) -> int:
        return self.request.stream_id

    @property
    def finished(self) -> bool:
        """True once the stream ended (by us, by an error or by a cancel)."""
        return self._conn.stream_state(self.stream_id) is wire.StreamState.CLOSED

    async def send_head(self, status: int, headers: tuple[tuple[str, str], ...] = ()) -> None:
        await self._send(wire.ResponseHead(stream_id=self.stream_id, status=status, headers=headers))

    async def send_chunk(self, data: bytes) -> None:
        """Send body bytes; large data is split so no frame exceeds the limit."""
        size = self._conn.config.chunk_size
        if len(data) <= size:  # one frame: our own stream id and bytes need no re-validation
            await self._send(trusted_chunk(self.stream_id, data if type(data) is bytes else bytes(data)))
            return
        view = memoryview(data)
        for start in range(0, max(len(view), 1), size):
            await self._send(
                wire.ResponseChunk(stream_id=self.stream_id, data=bytes(view[start : start + size]))
            )

    async def send_end(self, usage: wire.Usage, meta: Mapping[str, Any] | None = None) -> None:
        await self._send(wire.ResponseEnd(stream_id=self.stream_id, usage=usage, meta=meta or {}))

    async def send_error(self, code: wire.ErrorCode, message: str, usage: wire.Usage | None = None) -> None:
        message = message[:MAX_TEXT]
        await self._send(wire.StreamError(stream_id=self.stream_id, code=code, message=message, usage=usage))

    async def cancel(self, reason: str = "") -> None:
        """Abandon the stream from the responder side (the requester sees CANCELLED)."""
        if self.finished:
            return
        await self._send(wire.Cancel(stream_id=self.stream_id, reason=reason[:MAX_TEXT]))

    async def _send(self, msg: wire.StreamMessage) -> None:
        if self.cancelled.is_set():
            raise StreamCancelled(f"stream {self.stream_id} cancelled: {self.cancel_reason or 'link lost'}")
        if self._conn.error is not None or self._conn.closed:
            raise ConnectionLost(f"stream {self.stream_id}: the link is closed")
        # Check against the table first: a handler's mistake must not break the whole link.
        stream_transition(
            StreamRole.RESPONDER, self._conn.stream_state(self.stream_id), type(msg), self.stream_id
        )
        await self._conn._send(msg)
