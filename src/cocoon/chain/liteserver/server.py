"""A development liteserver: the embedded chain over ADNL/TCP, for pytoniq and other TON clients.

Each connection: a 256-byte handshake within HANDSHAKE_TIMEOUT_S, then packets. Pings are answered
at once; queries run as tasks (at most MAX_INFLIGHT per connection, so a wait does not hold up the
rest), answered in the order they finish. A framing or handshake error drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from cocoon.chain.liteserver.adnl import HANDSHAKE_BYTES, AdnlError, AdnlSession, ServerKey
from cocoon.chain.liteserver.backend import ChainBackend
from cocoon.chain.liteserver.queries import LiteHandler
from cocoon.chain.liteserver.tl import (
    ERROR_NOT_READY,
    LiteQuery,
    Ping,
    decode_packet,
    encode_error,
    encode_pong,
)

__all__ = ["DevLiteServer"]

HANDSHAKE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 256
MAX_INFLIGHT = 64
READ_CHUNK = 1 << 16
log = logging.getLogger(__name__)


class DevLiteServer:
    """Serves ``chain_path`` (a LocalChain file) as a liteserver with identity ``key``."""

    def __init__(self, chain_path: Path, key: ServerKey, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.key = key
        self._backend = ChainBackend(chain_path)
        self._handler = LiteHandler(self._backend)
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closed = False
        self.queries: dict[str, int] = {}  # query name -> how many were asked (logged and tested)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self._backend.start()
        self._server = await asyncio.start_server(self._accept, self._host, self._port, limit=READ_CHUNK)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._conns[task] = writer
        try:
            await self._serve(reader, writer)
        except (AdnlError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.debug("liteserver connection dropped: %s", exc)
        finally:
            self._conns.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await asyncio.wait_for(reader.readexactly(HANDSHAKE_BYTES), HANDSHAKE_TIMEOUT_S)
        session = AdnlSession(self.key, hello)
        writer.write(session.seal(b""))  # the empty packet that completes the handshake
        inflight: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(READ_CHUNK):
                for payload in session.feed(data):
                    packet = decode_packet(payload)
                    if isinstance(packet, Ping):
                        writer.write(session.seal(encode_pong(packet.random_id)))
                    elif isinstance(packet, LiteQuery):
                        name = packet.name if packet.wait is None else f"waitMasterchainSeqno+{packet.name}"
                        self.queries[name] = self.queries.get(name, 0) + 1
                        if len(inflight) >= MAX_INFLIGHT:
                            busy = encode_error(
                                packet.query_id, ERROR_NOT_READY, "too many queries in flight"
                            )
                            writer.write(session.seal(busy))
                            continue
                        job = asyncio.create_task(self._answer(session, writer, packet))
                        inflight.add(job)
                        job.add_done_callback(inflight.discard)
                await writer.drain()
        finally:
            for job in inflight:
                job.cancel()

    async def _answer(self, session: AdnlSession, writer: asyncio.StreamWriter, query: LiteQuery) -> None:
        answer = await self._handler.answer(query)
        if answer is not None and not writer.is_closing():
            writer.write(session.seal(answer))  # seal and write together: the stream cipher's order

    async def stop(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, cut every connection (as a killed server would) and close the chain.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns.values()):
                writer.transport.abort()  # the handlers see the connection reset and end
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        await self._backend.aclose()
