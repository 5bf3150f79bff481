"""Byte transports under a NodeConnection: the interface, and an in-memory twin for tests.

TLS over TCP is :class:`cocoon.net.tls.TlsLink`.

A transport is the narrow interface the connection needs: ``write`` (buffer) + ``drain`` (wait
for room: this is where a slow peer applies backpressure), ``receive`` (``b""`` at EOF), ``aclose``
(graceful, bounded by the caller) and ``abort`` (now). Neither class translates errors; the
connection does that once, with :func:`~cocoon.net.errors.map_exceptions`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["READ_SIZE", "MemoryTransport", "Transport", "memory_transport_pair"]

READ_SIZE = 256 * 1024
_MEMORY_HIGH_WATER = 256 * 1024


class Transport(Protocol):
    address: str

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def receive(self) -> bytes: ...

    def peer_certificate(self) -> bytes | None: ...

    async def aclose(self) -> None: ...

    def abort(self) -> None: ...


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
