"""Accepting links: :func:`serve` binds, then returns a :class:`Server` that runs in its own group.

Each accepted socket gets one task in the server's TaskGroup: TLS handshake, verifier, Hello
exchange, then the connection runs in that same task; its wrapper aborts the transport in
``finally``. Accept errors that mean overload (EMFILE, ENFILE, ENOBUFS, ENOMEM) are logged and
retried after a short sleep; any other accept error ends the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Mapping
from typing import Any

from cocoon import wire
from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, Verifier, establish
from cocoon.net.errors import LinkClosed, NetError, map_exceptions
from cocoon.net.tls import TlsLink, tls_accept

__all__ = ["ACCEPT_RETRY_DELAY", "Server", "serve"]

log = logging.getLogger("cocoon.net")

ACCEPT_RETRY_DELAY = 0.1
_OVERLOAD = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Server:
    """A listening socket and every link accepted on it."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig,
    ) -> None:
        self._sock = sock
        self._ssl = ssl_context
        self._verifier = verifier
        self._role = role
        self._info = dict(info)
        self._handler = handler
        self.config = config
        self.host, self.port = sock.getsockname()[:2]
        self._connections: set[NodeConnection] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.accepted = 0
        self.refused = 0

    @property
    def connections(self) -> frozenset[NodeConnection]:
        """The links that are up now."""
        return frozenset(self._connections)

    @property
    def closed(self) -> bool:
        return self._closing

    def set_info(self, info: Mapping[str, Any]) -> None:
        """What links accepted from now on announce in their hello (live ones keep theirs)."""
        self._info = dict(info)

    def statistics(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "connections": len(self._connections),
            "accepted": self.accepted,
            "refused": self.refused,
            "closed": self._closing,
        }

    async def aclose(self) -> None:
        """Stop accepting, say Goodbye to every peer, release everything. Idempotent."""
        if not self._closing:
            self._closing = True
            try:
                self._sock.close()
                async with asyncio.timeout(self.config.close_timeout * 2):
                    await asyncio.gather(
                        *(conn.aclose("server shutting down") for conn in list(self._connections)),
                        return_exceptions=True,
                    )
            except TimeoutError:
                pass
            finally:
                if self._runner is not None:
                    self._runner.cancel()
        if self._runner is not None:
            await asyncio.wait([self._runner])
            failure = None if self._runner.cancelled() else self._runner.exception()
            if failure is not None:
                raise failure  # the accept loop died of a non-overload error

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"cocoon server {self.host}:{self.port}")

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    sock, _ = await loop.sock_accept(self._sock)
                except OSError as exc:
                    if self._closing:
                        return
                    if exc.errno in _OVERLOAD:
                        log.warning("accept failed (%s); retrying in %.1fs", exc, ACCEPT_RETRY_DELAY)
                        await asyncio.sleep(ACCEPT_RETRY_DELAY)
                        continue
                    raise
                self.accepted += 1
                tg.create_task(self._serve_one(sock))

    async def _serve_one(self, sock: socket.socket) -> None:
        transport: TlsLink | None = None
        conn: NodeConnection | None = None
        try:
            with map_exceptions(connecting=True):
                async with asyncio.timeout(self.config.handshake_timeout):
                    transport = await tls_accept(sock, self._ssl)
            conn = await establish(
                transport,
                dialer=False,
                role=self._role,
                info=self._info,
                handler=self._handler,
                verifier=self._verifier,
                config=self.config,
            )
            if self._closing:
                raise LinkClosed("server is shutting down")
            self._connections.add(conn)
            await conn._run()
        except NetError as exc:
            self.refused += conn is None
            log.info("inbound link ended: %s: %s", type(exc).__name__, exc)
        except Exception:
            # One broken link must not take the whole server down; it is logged, not lost.
            log.exception("inbound link failed")
        finally:
            if conn is not None:
                self._connections.discard(conn)
            if transport is not None:
                transport.abort()
            else:
                with contextlib.suppress(OSError):
                    sock.close()


async def serve(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext,
    verifier: Verifier | None,
    role: wire.Role,
    info: Mapping[str, Any],
    handler: Handler,
    config: NetConfig = DEFAULT_CONFIG,
    backlog: int = 256,
) -> Server:
    """Bind ``host:port`` (0 = any free port) and accept links; returns once the socket listens."""
    loop = asyncio.get_running_loop()
    with map_exceptions(connecting=True):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
        # accepted sockets inherit it; without it Nagle + delayed ACK add ~40 ms per small write.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:  # name the address: "in use" alone does not say which port
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        except BaseException:
            sock.close()
            raise
    server = Server(
        sock, ssl_context=ssl_context, verifier=verifier, role=role, info=info, handler=handler, config=config
    )
    server._start()
    return server
