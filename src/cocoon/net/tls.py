"""TLS over a plain TCP transport, driven here: one lean protocol for uvloop and asyncio alike.

The loops' own TLS layers give every connection a private 256 KiB read buffer (uvloop mallocs it
in C, out of reach) and put a StreamReader, a StreamWriter and a 256 KiB temporary per read between
the socket and the frames. Here the socket reads into one buffer per thread (the loop calls
``get_buffer`` and ``buffer_updated`` back to back, so links of one loop can share it), ciphertext
goes to OpenSSL through memory BIOs in slices (so a burst never leaves a big BIO allocation behind)
and plaintext is handed to the link's reader as it is decrypted. An idle link holds the OpenSSL
object and a few small Python objects; a burst's buffers are freed when it has passed.

Backpressure: the TCP transport's pause/resume_writing gate :meth:`TlsLink.drain`; plaintext the
reader has not taken yet is bounded by pausing the socket past ``_READ_HIGH`` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

from cocoon.tee.tls import peer_certificate_der

__all__ = ["TlsLink", "tls_accept", "tls_connect"]

_RECV_SIZE = 256 * 1024  # one shared socket read buffer per thread, however many links
_BIO_SLICE = 8 * 1024  # bytes fed to OpenSSL at a time: what the memory BIOs keep allocated after a burst
_RECORD = 16 * 1024  # plaintext per TLS record: the most one SSLObject.read returns
_READ_HIGH = 512 * 1024  # undelivered plaintext past which the socket is paused
_shared = threading.local()


def _bio_releaser() -> Callable[[ssl.MemoryBIO], None] | None:
    """A way to free an empty memory BIO's buffer (a BIO_s_mem keeps its largest size forever):
    after the handshake each end's two BIOs hold the flights (~6.6 KiB each, ~26 KiB a link).

    CPython's MemoryBIO object is ``{PyObject_HEAD; BIO *bio; ...}``; the pointer is checked
    against a probe BIO's pending count and method type before it is trusted. None: not available.
    """
    try:
        lib = ctypes.CDLL(getattr(ssl._ssl, "__file__", ""))  # type: ignore[attr-defined]
        ctrl = lib.BIO_ctrl
        ctrl.restype, ctrl.argtypes = (
            ctypes.c_long,
            [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p],
        )
        method_type = lib.BIO_method_type
        method_type.restype, method_type.argtypes = ctypes.c_int, [ctypes.c_void_p]
        buf_new = lib.BUF_MEM_new
        buf_new.restype, buf_new.argtypes = ctypes.c_void_p, []
    except (OSError, AttributeError):
        return None
    offset = object.__basicsize__  # just past PyObject_HEAD

    def bio_of(bio: ssl.MemoryBIO) -> int:
        return ctypes.c_void_p.from_address(id(bio) + offset).value or 0

    probe = ssl.MemoryBIO()
    probe.write(b"x" * 37)
    pointer = bio_of(probe)
    # BIO_CTRL_PENDING 10; BIO_TYPE_MEM (1 | BIO_TYPE_SOURCE_SINK 0x0400)
    if not pointer or method_type(pointer) != 0x0401 or ctrl(pointer, 10, 0, None) != 37:
        return None

    def release(bio: ssl.MemoryBIO) -> None:
        if bio.pending:
            return
        fresh = buf_new()
        if fresh:  # BIO_C_SET_BUF_MEM 114, BIO_CLOSE 1: frees the old buffer, owns the new one
            ctrl(bio_of(bio), 114, 1, fresh)

    return release


_release_bio = _bio_releaser()


def _recv_buffer() -> memoryview:
    view: memoryview | None = getattr(_shared, "view", None)
    if view is None:
        view = _shared.view = memoryview(bytearray(_RECV_SIZE))
    return view


class Sink(Protocol):
    """Where a TlsLink in push mode hands what it decrypts (a NodeConnection). The object itself,
    not two bound methods: those were ~0.1 KiB per idle link end."""

    def _on_data(self, data: bytes) -> None: ...

    def _on_read_error(self, exc: BaseException) -> None: ...


class TlsLink(asyncio.BufferedProtocol):
    """One TLS connection: the ``Transport`` a :class:`~cocoon.net.connection.NodeConnection` uses."""

    # Slots: an idle link holds one per end (its attribute dict was ~0.7 KiB).
    __slots__ = (
        "_c",
        "_end_told",
        "_eof",
        "_error",
        "_handshake",
        "_incoming",
        "_loop",
        "_lost",
        "_lost_waiter",
        "_outgoing",
        "_plain",
        "_plain_size",
        "_reader",
        "_reading_paused",
        "_sink",
        "_ssl",
        "_tcp",
        "_view",
        "_writable",
        "address",
    )

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        # The C object under ssl.SSLObject: its read/write/pending without the Python wrappers.
        self._c: Any = getattr(self._ssl, "_sslobj", self._ssl)
        self._tcp: asyncio.Transport | None = None
        self._view = _recv_buffer()  # this thread's: a link lives on its loop's thread
        self._handshake: asyncio.Future[None] | None = self._loop.create_future()
        self._plain: list[bytes] = []
        self._plain_size = 0
        self._reading_paused = False
        self._eof = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while the socket buffer is full
        self._lost = False  # connection_lost has run
        self._lost_waiter: asyncio.Future[None] | None = None  # aclose's, made only when it waits
        # Push mode (set_sink): plaintext goes to the sink as it is decrypted, b"" at EOF.
        self._sink: Sink | None = None
        self._end_told = False
        self.address = "?"

    # --- the Transport interface -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        tcp = self._tcp
        if tcp is None or self._error is not None or tcp.is_closing():
            raise ConnectionResetError("transport is closing")
        if len(data) <= _BIO_SLICE:
            self._c.write(data)
            tcp.write(self._outgoing.read())
            return
        view, pieces = memoryview(data), []
        for start in range(0, len(view), _BIO_SLICE):
            self._c.write(view[start : start + _BIO_SLICE])
            pieces.append(self._outgoing.read())
        tcp.writelines(pieces)  # one send on uvloop, not one per record

    async def drain(self) -> None:
        while self._writable is not None:
            await asyncio.shield(self._writable)
        if self._error is not None:
            raise self._error

    async def receive(self) -> bytes:
        while not self._plain:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        plain = self._plain
        data = plain[0] if len(plain) == 1 else b"".join(plain)
        plain.clear()
        self._plain_size = 0
        if self._reading_paused and self._tcp is not None:
            self._reading_paused = False
            self._tcp.resume_reading()
        return data

    def set_sink(self, sink: Sink) -> None:
        """Hand every decrypted byte to ``sink._on_data`` as it arrives (``b""`` at EOF), errors to
        ``sink._on_read_error``.

        From then on :meth:`receive` is not used; the reader applies backpressure with
        :meth:`pause_reading` / :meth:`resume_reading`.
        """
        self._sink = sink
        if self._reading_paused and self._tcp is not None:
            self._reading_paused = False
            self._tcp.resume_reading()
        self._push()
        self._tell_end()

    def pause_reading(self) -> None:
        if not self._reading_paused and self._tcp is not None and not self._tcp.is_closing():
            self._reading_paused = True
            self._tcp.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self._tcp is not None:
            self._reading_paused = False
            if not self._tcp.is_closing():
                self._tcp.resume_reading()

    def peer_certificate(self) -> bytes | None:
        return peer_certificate_der(self._ssl)

    async def aclose(self) -> None:
        """close_notify, then close the socket once what is buffered is sent (bounded by the caller)."""
        tcp = self._tcp
        if tcp is None:
            return
        if not tcp.is_closing() and self._handshake is None:
            with contextlib.suppress(ssl.SSLError):
                self._ssl.unwrap()
            with contextlib.suppress(Exception):
                tcp.write(self._outgoing.read())
        tcp.close()
        if not self._lost:
            if self._lost_waiter is None:
                self._lost_waiter = self._loop.create_future()
            await asyncio.shield(self._lost_waiter)

    def abort(self) -> None:
        if self._tcp is not None:
            self._tcp.abort()

    # --- the protocol the loop drives --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        if self._tcp is not None:
            return
        self._tcp = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        # uvloop sets TCP_NODELAY on every TCP transport itself, and there get_extra_info("socket")
        # makes (and keeps) a socket object per link.
        sock = None if type(transport).__module__.startswith("uvloop") else transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        view = self._view
        if nbytes <= _BIO_SLICE and self._handshake is None:  # a streamed event: one small read
            if self._error is not None:
                return
            self._incoming.write(view[:nbytes])
            self._decrypt()
        else:
            for start in range(0, nbytes, _BIO_SLICE):
                if self._error is not None:
                    return
                self._incoming.write(view[start : min(start + _BIO_SLICE, nbytes)])
                if self._handshake is not None:
                    self._handshake_step()
                if self._handshake is None:
                    self._decrypt()
        if self._sink is not None:
            self._push()
            self._tell_end()
        elif self._plain and self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        self._tell_end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = exc if exc is not None else None
        self._eof = True
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(
                exc or ConnectionResetError("the peer closed the connection during the TLS handshake")
            )
        self._tcp_writable()
        self._wake()
        self._tell_end()
        self._lost = True
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        self._tcp_writable()

    # --- internals ---------------------------------------------------------------------------

    def _tcp_writable(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self) -> None:
        if self._plain and self._sink is not None:
            plain = self._plain
            data = plain[0] if len(plain) == 1 else b"".join(plain)
            plain.clear()
            self._plain_size = 0
            self._sink._on_data(data)

    def _tell_end(self) -> None:
        """In push mode, say once that the stream ended: the error, else EOF."""
        sink = self._sink
        if self._end_told or sink is None:
            return
        self._push()  # whatever was decrypted before the end comes first
        if self._error is not None:
            self._end_told = True
            sink._on_read_error(self._error)
        elif self._eof:
            self._end_told = True
            sink._on_data(b"")

    def _wake(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._flush_outgoing()  # the alert, if OpenSSL made one
        if self._tcp is not None:
            self._tcp.abort()
        self._wake()
        self._tell_end()

    def _flush_outgoing(self) -> None:
        if self._outgoing.pending and self._tcp is not None and not self._tcp.is_closing():
            self._tcp.write(self._outgoing.read())

    def _handshake_step(self) -> None:
        waiter = self._handshake
        assert waiter is not None
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_outgoing()
            return
        except Exception as exc:
            self._handshake = None
            self._error = exc
            self._flush_outgoing()
            if not waiter.done():
                waiter.set_exception(exc)
            if self._tcp is not None:
                self._tcp.abort()
            return
        self._handshake = None
        self._flush_outgoing()
        if _release_bio is not None:  # each only if empty: bytes after Finished stay queued
            _release_bio(self._incoming)
            _release_bio(self._outgoing)
        if not waiter.done():
            waiter.set_result(None)

    def _decrypt(self) -> None:
        ssl_obj, incoming = self._c, self._incoming
        try:
            while incoming.pending or ssl_obj.pending():
                data = ssl_obj.read(_RECORD)
                if not data:  # close_notify
                    self._eof = True
                    break
                self._plain.append(data)
                self._plain_size += len(data)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:  # pragma: no cover - memory BIOs never refuse writes
            pass
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        if self._outgoing.pending:  # a TLS 1.3 key update or ticket answer
            self._flush_outgoing()
        if (
            self._sink is None
            and self._plain_size > _READ_HIGH
            and not self._reading_paused
            and self._tcp is not None
        ):
            self._reading_paused = True
            self._tcp.pause_reading()

    async def _start(self, transport: asyncio.BaseTransport) -> None:
        """Run the handshake on a connected socket; raises what OpenSSL or the socket raised."""
        self._attach(transport)
        waiter = self._handshake
        assert waiter is not None
        if not waiter.done():
            self._handshake_step()  # the client's hello; a server just finds nothing to read
        try:
            await waiter
        except BaseException:
            self.abort()
            raise


async def tls_connect(host: str, port: int, context: ssl.SSLContext) -> TlsLink:
    """Dial ``host:port`` and complete the TLS handshake (SNI: ``host``, as asyncio does)."""
    loop = asyncio.get_running_loop()
    link = TlsLink(context, server_side=False, server_hostname=host)
    transport, _ = await loop.create_connection(lambda: link, host, port)
    await link._start(transport)
    return link


async def tls_accept(sock: socket.socket, context: ssl.SSLContext) -> TlsLink:
    """Take an accepted socket and complete the server side of the TLS handshake."""
    loop = asyncio.get_running_loop()
    link = TlsLink(context, server_side=True, server_hostname=None)
    transport, _ = await loop.connect_accepted_socket(lambda: link, sock)
    await link._start(transport)
    return link
