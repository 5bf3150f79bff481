"""A lean HTTP/1.1 client for OpenAI-compatible upstreams: a keep-alive pool parsed by httptools.

Why not httpx on this path: per streamed event httpx, httpcore and h11 cost more CPU than the rest
of the worker (an event object, a state machine and several awaits per chunk, anyio around every
connection). Here a connection is an ``asyncio.Protocol`` whose bytes llhttp parses in C, and the
body iterator hands over *everything one socket read delivered* at once: an upstream that writes
fifty events in two reads costs two iterations, while one that writes a token at a time still has
each token handed on the moment it arrives (nothing ever waits to batch).

Timeouts are :class:`~cocoon.inference.http.EngineTimeouts`: ``connect`` (TCP and TLS), ``write``
(the request), ``read`` (the longest silence before the head or between body bytes) and ``pool``
(waiting for one of ``max_connections``; exhausted means :class:`EngineBusy`). Failures are
engine errors chained from the cause: unreachable or reset → :class:`EngineUnavailable`, silence
→ :class:`EngineTimeout`, bytes that are not HTTP or a body cut short → :class:`EngineProtocolError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from cocoon.inference.errors import EngineBusy, EngineProtocolError, EngineTimeout, EngineUnavailable

__all__ = ["Timeouts", "UpstreamPool", "UpstreamResponse"]

_PAUSE_AT = 256 * 1024  # unread body bytes at which the socket stops being read (backpressure)
_KEEPALIVE_S = 4.0  # under uvicorn's 5 s keep-alive, so a pooled connection is not closed under us


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    write: float
    pool: float


class _Connection(asyncio.Protocol):
    """One upstream socket and the response being read from it."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._can_write = True
        self.lost: BaseException | None = None  # set once the socket is gone (an OSError or EOF)
        self.broken: EngineProtocolError | None = None
        self.idle_since = 0.0
        # One timer watches for silence across the waits: arming a timer for every wait (every body
        # read) costs more than the read; this one is moved on only when it fires early.
        self._deadline = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._watch_at = 0.0
        self.begin()

    def begin(self) -> None:
        """Forget the last response (before sending the next request on a kept-alive socket)."""
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.head_done = False
        self.complete = False
        self._framed = False  # content-length or chunked: the end is in the bytes, not at EOF
        self._keep_alive = False
        self._body = bytearray()
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.broken = EngineProtocolError(f"upstream sent bytes that are not HTTP/1.1: {exc}")
            self.broken.__cause__ = exc
            self.abort()
        if len(self._body) >= _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the upstream closed the connection")
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.head_done and not self._framed and not self.complete:
            self.complete = True  # a body delimited by the close itself (HTTP/1.0 style)
        self._can_write = True
        self._wake()

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._framed = True
        self.headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the body ends
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.complete = True

    # -- used by the pool and the response -------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and self.lost is None and self.broken is None

    def take_body(self) -> bytes:
        data = bytes(self._body)
        self._body.clear()
        if self._paused and self.transport is not None and self.lost is None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, timeout: float) -> None:
        """Until something changes (bytes, the end, the close, room to write), at most ``timeout``
        (then ``TimeoutError``). A timer on the future itself: ``asyncio.timeout`` costs several
        times more per wait (a context, the current task, a reschedule), and every body read waits."""
        waiter = self._waiter = self._loop.create_future()
        self._deadline = deadline = self._loop.time() + timeout
        if self._watch is None or deadline < self._watch_at:
            self._arm(deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _arm(self, at: float) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch_at = at
        self._watch = self._loop.call_at(at, self._on_watch)

    def _on_watch(self) -> None:
        self._watch = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms the watch again
        if self._loop.time() >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._arm(self._deadline)  # the wait now pending started after this timer was set

    async def write(self, data: bytes, timeout: float) -> None:
        assert self.transport is not None
        self.transport.write(data)
        while not self._can_write and self.lost is None:
            await self.wait(timeout)
        if self.lost is not None:
            raise EngineUnavailable(f"the upstream closed the connection: {self.lost}") from self.lost

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """Status and headers at once; ``chunks()`` yields the body as it arrives (iterate once)."""

    def __init__(self, pool: UpstreamPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = tuple(conn.headers)
        self._released = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every body byte that has arrived, as soon as it has: one piece per wake-up, never empty."""
        conn = self._conn
        try:
            while True:
                data = conn.take_body()
                if data:
                    yield data
                    continue
                if conn.complete:
                    return
                _raise_if_gone(conn, "the upstream closed the connection mid-body")
                await self._pool.read_wait(conn)
        finally:
            self.release()

    async def read(self, limit: int) -> bytes:
        """The body, cut at ``limit`` bytes (error bodies)."""
        parts: list[bytes] = []
        size = 0
        async for part in self.chunks():
            parts.append(part)
            size += len(part)
            if size >= limit:
                break
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Hand the connection back (kept alive if the body was read to its end). Idempotent."""
        if not self._released:
            self._released = True
            self._pool.give_back(self._conn)


def _raise_if_gone(conn: _Connection, what: str) -> None:
    if conn.broken is not None:
        raise conn.broken
    if conn.lost is not None:
        if isinstance(conn.lost, ConnectionResetError) and conn.lost.errno is None:
            raise EngineProtocolError(what) from conn.lost
        raise EngineUnavailable(f"{what}: {conn.lost}") from conn.lost


class UpstreamPool:
    """Kept-alive connections to one origin; at most ``max_connections`` requests at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts,
        max_connections: int,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` for ``https://`` (default: verify against the certifi roots)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = self._port == (443 if self._tls else 80)
        authority = self._host if default_port else f"{self._host}:{self._port}"
        fixed = {"host": authority, "accept-encoding": "identity", **dict(headers)}
        self._fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.timeouts = timeouts
        self._max = max_connections
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None  # made on first use, inside the running loop
        self._loop: asyncio.AbstractEventLoop | None = None  # that loop (its clock for keep-alive)
        self._ssl = ssl_context
        self._closed = False

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> UpstreamResponse:
        """Send one request and wait for the response head; the caller reads the body and releases."""
        if self._closed:
            raise EngineUnavailable("the upstream pool is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
            self._loop = asyncio.get_running_loop()
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.timeouts.pool):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise EngineBusy(f"{method} {path}: all upstream connections are busy") from exc
        else:
            await self._slots.acquire()  # a free slot: taken at once, so no timer to set and cancel
        conn: _Connection | None = None
        try:
            conn = await self._connection()
            await conn.write(self._head(method, path, body, content_type), self.timeouts.write)
            while not conn.head_done:
                _raise_if_gone(conn, "the upstream closed the connection without answering")
                await self.read_wait(conn)
        except BaseException:
            if conn is not None:
                conn.abort()
            self._slots.release()
            raise
        return UpstreamResponse(self, conn)

    def _head(self, method: str, path: str, body: bytes | None, content_type: str) -> bytes:
        lines = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self._fixed_head
        if body is None:
            return lines + b"\r\n"
        length = f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode("latin-1")
        return lines + length + body

    async def read_wait(self, conn: _Connection) -> None:
        try:
            await conn.wait(self.timeouts.read)
        except TimeoutError as exc:
            conn.abort()
            raise EngineTimeout(f"the upstream sent nothing for {self.timeouts.read}s") from exc

    async def _connection(self) -> _Connection:
        assert self._loop is not None  # set with the slots
        now = self._loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.lost is None and now - conn.idle_since < _KEEPALIVE_S:
                conn.begin()
                return conn
            conn.abort()
        return await self._dial()

    async def _dial(self) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if self._tls else None
        try:
            async with asyncio.timeout(self.timeouts.connect):
                transport, conn = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=tls,
                    server_hostname=self._host if tls else None,
                    ssl_handshake_timeout=self.timeouts.connect if tls else None,
                )
        except TimeoutError as exc:
            raise EngineTimeout(f"connecting to {self._host}:{self._port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise EngineUnavailable(f"upstream {self._host}:{self._port} unreachable: {exc}") from exc
        conn.transport = transport  # uvloop calls connection_made only on the next loop turn
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                import certifi

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi comes with httpx
                self._ssl = ssl.create_default_context()
        return self._ssl

    def give_back(self, conn: _Connection) -> None:
        now = (self._loop or asyncio.get_running_loop()).time()
        if conn.reusable and not self._closed:
            conn.idle_since = now
            self._idle.append(conn)
        else:
            conn.abort()
        # The oldest idle sockets are first: a burst's extra connections go once they expire.
        while self._idle and (
            self._idle[0].lost is not None or now - self._idle[0].idle_since >= _KEEPALIVE_S
        ):
            self._idle.pop(0).abort()
        if self._slots is not None:
            self._slots.release()

    async def aclose(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
