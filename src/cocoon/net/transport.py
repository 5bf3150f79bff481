"""Byte transports under a NodeConnection: TLS over TCP, and an in-memory twin for tests.

A transport is the narrow interface the connection needs: ``write`` (buffer) + ``drain`` (wait
for room: this is where a slow peer applies backpressure), ``receive`` (``b""`` at EOF), ``aclose``
(graceful, bounded by the caller) and ``abort`` (now). Neither class translates errors; the
connection does that once, with :func:`~cocoon.net.errors.map_exceptions`.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import ssl
import threading
from typing import Protocol

from cocoon.tee.tls import peer_certificate_der

__all__ = ["READ_SIZE", "MemoryTransport", "TlsTransport", "Transport", "memory_transport_pair"]

READ_SIZE = 256 * 1024
_MEMORY_HIGH_WATER = 256 * 1024
# asyncio's TLS layer gives every connection its own 256 KiB read buffer, allocated and touched up
# front: half a MiB of RSS per idle link (both ends). Connections served by one thread share one.
_shared = threading.local()


class Transport(Protocol):
    address: str

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def receive(self) -> bytes: ...

    def peer_certificate(self) -> bytes | None: ...

    async def aclose(self) -> None: ...

    def abort(self) -> None: ...


class TlsTransport:
    """asyncio streams over a TLS socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        share_tls_read_buffer(writer.transport)
        peer = writer.get_extra_info("peername")
        self.address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("transport is closing")
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> bytes:
        return await self._reader.read(READ_SIZE)

    def peer_certificate(self) -> bytes | None:
        obj = self._writer.get_extra_info("ssl_object")
        if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
            return None
        return peer_certificate_der(obj)

    async def aclose(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    def abort(self) -> None:
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()
        else:
            # A graceful close may be stuck on the TLS close_notify: abort the socket underneath.
            with contextlib.suppress(Exception):
                transport.abort()


def share_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Let an asyncio TLS transport read into its thread's shared buffer instead of its own.

    ``SSLProtocol`` uses ``_ssl_buffer`` only between its ``get_buffer`` and ``buffer_updated``
    calls, which the event loop makes back to back (``recv_into`` in between, nothing else), so
    every connection of one loop can use the same buffer; sharing it per thread keeps two loops in
    two threads apart. Anything else (a plain socket, another asyncio's internals) is left alone.
    """
    protocol = getattr(transport, "_ssl_protocol", None)
    if not isinstance(protocol, asyncio.sslproto.SSLProtocol) or not hasattr(protocol, "_ssl_buffer"):
        return
    size = asyncio.sslproto.SSLProtocol.max_size
    buffer: bytearray | None = getattr(_shared, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _shared.buffer = bytearray(size)
        _shared.view = memoryview(buffer)
    vars(protocol).update(_ssl_buffer=buffer, _ssl_buffer_view=_shared.view)


class _Pipe:
    """One direction of a memory link: a bounded byte buffer with EOF."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()


class MemoryTransport:
    """Half of an in-memory link; the same backpressure shape as a socket (bounded buffer)."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, address: str, certificate: bytes | None) -> None:
        self._in = incoming
        self._out = outgoing
        self.address = address
        self._certificate = certificate

    def write(self, data: bytes) -> None:
        if self._out.eof:
            raise ConnectionResetError("memory link closed")
        self._out.buffer += data
        self._out.readable.set()
        if len(self._out.buffer) >= _MEMORY_HIGH_WATER:
            self._out.writable.clear()

    async def drain(self) -> None:
        while not self._out.writable.is_set():
            await self._out.writable.wait()
        if self._out.eof and self._out.buffer:
            raise ConnectionResetError("memory link closed")

    async def receive(self) -> bytes:
        while not self._in.buffer and not self._in.eof:
            self._in.readable.clear()
            await self._in.readable.wait()
        data = bytes(self._in.buffer[:READ_SIZE])
        del self._in.buffer[:READ_SIZE]
        if len(self._in.buffer) < _MEMORY_HIGH_WATER:
            self._in.writable.set()
        return data

    def peer_certificate(self) -> bytes | None:
        return self._certificate

    async def aclose(self) -> None:
        self.abort()

    def abort(self) -> None:
        for pipe in (self._in, self._out):
            pipe.eof = True
            pipe.readable.set()
            pipe.writable.set()
        self._in.buffer.clear()


def memory_transport_pair(
    *, a_certificate: bytes | None = None, b_certificate: bytes | None = None
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two joined transports; each reports the *other's* certificate as its peer's."""
    ab, ba = _Pipe(), _Pipe()
    a = MemoryTransport(ba, ab, "memory:b", b_certificate)
    b = MemoryTransport(ab, ba, "memory:a", a_certificate)
    return a, b
