"""Making links: :func:`dial` once, or a :class:`Dialer` that keeps one link to a target alive."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cocoon import wire
from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, Verifier, establish, refusal_reason
from cocoon.net.errors import HandshakeRefused, LinkClosed, NetError, map_exceptions
from cocoon.net.tls import tls_connect

__all__ = ["Connect", "Dialer", "dial"]

Connect = Callable[[], Awaitable[NodeConnection]]  # makes one running link (a memory hub's dial)

log = logging.getLogger("cocoon.net")


async def dial(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext,
    verifier: Verifier | None,
    role: wire.Role,
    info: Mapping[str, Any],
    handler: Handler,
    config: NetConfig = DEFAULT_CONFIG,
) -> NodeConnection:
    """Connect, verify the peer, exchange Hellos and run ``on_connect``; returns the running link.

    Raises ConnectError, NetTimeout or HandshakeRefused.
    """
    with map_exceptions(connecting=True):
        async with asyncio.timeout(config.connect_timeout):
            link = await tls_connect(host, port, ssl_context)
    conn = await establish(
        link,
        dialer=True,
        role=role,
        info=info,
        handler=handler,
        verifier=verifier,
        config=config,
    )
    conn._start()
    await _dialer_on_connect(conn, handler)
    return conn


async def _dialer_on_connect(conn: NodeConnection, handler: Handler) -> None:
    """The dialer's on_connect runs on the live link (so it may query); raising closes it."""
    try:
        async with asyncio.timeout(conn.config.handshake_timeout):
            await handler.on_connect(conn)
    except Exception as exc:
        await conn.aclose(refusal_reason(exc))
        raise HandshakeRefused(f"on_connect refused the peer: {exc}") from exc
    except BaseException:
        await asyncio.shield(conn.aclose("cancelled"))
        raise
    conn._ready.set()


class Dialer:
    """Keeps one link to ``host:port`` alive: reconnects with exponential backoff and jitter.

    Each attempt is :func:`dial` over TLS, or ``connect()`` when given (links without sockets).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
        rng: random.Random | None = None,
        connect: Connect | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._verifier = verifier
        self._role = role
        self._info = dict(info)
        self._handler = handler
        self.config = config
        self._rng = rng or random.Random()
        self.connection: NodeConnection | None = None
        self.last_error: BaseException | None = None
        self.attempts = 0
        self.connects = 0
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._connect = connect
        # Asked after each failed attempt: True stops dialling (a refusal that retrying cannot change).
        self.give_up: Callable[[NetError], bool] | None = None
        self.refused: NetError | None = None  # the failure it gave up on

    async def start(self) -> None:
        """Begin dialling in the background (returns at once; see :meth:`wait_connected`)."""
        if self._closing:
            raise LinkClosed("this Dialer is closed")
        if self._runner is not None:
            raise RuntimeError("Dialer already started")
        self._runner = asyncio.create_task(self._run(), name=f"cocoon dialer {self.host}:{self.port}")

    async def wait_connected(self) -> NodeConnection:
        """The current link, waiting for one if it is down."""
        while True:
            if self._closing:
                raise LinkClosed("this Dialer is closed")
            if self.refused is not None:
                raise self.refused
            self._raise_if_crashed()
            conn = self.connection
            if conn is not None and not conn.closed:
                return conn
            self._changed.clear()
            await self._changed.wait()

    def _raise_if_crashed(self) -> None:
        runner = self._runner
        if runner is not None and runner.done() and not runner.cancelled():
            exc = runner.exception()
            if exc is not None:
                raise exc

    def statistics(self) -> dict[str, Any]:
        return {
            "target": f"{self.host}:{self.port}",
            "connected": self.connection is not None and not self.connection.closed,
            "attempts": self.attempts,
            "connects": self.connects,
            "last_error": repr(self.last_error) if self.last_error else None,
        }

    def backoff(self, failures: int) -> float:
        """Delay before the next attempt: doubling from ``backoff_initial``, capped, times 0.5–1 jitter."""
        base = min(self.config.backoff_max, self.config.backoff_initial * 2.0 ** max(failures - 1, 0))
        return float(base) * (0.5 + 0.5 * self._rng.random())

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            self.attempts += 1
            try:
                conn = await self._attempt()
            except NetError as exc:  # anything else is a bug: it ends the runner and surfaces
                failures += 1
                self.last_error = exc
                log.info("dial %s:%d failed (%s); attempt %d", self.host, self.port, exc, failures)
                if self.give_up is not None and self.give_up(exc):
                    self.refused = exc
                    self._changed.set()
                    return
            else:
                failures = 0
                self.connects += 1
                self.connection = conn
                self._changed.set()
                try:
                    await conn.wait_closed()
                finally:
                    self.connection = None
                    self._changed.set()
                self.last_error = conn.error
                log.info("link to %s:%d closed (%s); reconnecting", self.host, self.port, conn.error)
            await asyncio.sleep(self.backoff(failures))

    async def _attempt(self) -> NodeConnection:
        if self._connect is not None:
            return await self._connect()
        assert self._ssl is not None
        return await dial(
            self.host,
            self.port,
            ssl_context=self._ssl,
            verifier=self._verifier,
            role=self._role,
            info=self._info,
            handler=self._handler,
            config=self.config,
        )

    async def aclose(self) -> None:
        """Stop reconnecting and close the current link. Idempotent."""
        self._closing = True
        self._changed.set()
        # Take the link before cancelling the runner: its `finally` forgets the connection.
        conn = self.connection
        try:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.wait([self._runner])
        finally:
            self.connection = None
            if conn is not None:
                await conn.aclose("dialer closed")
        self._raise_if_crashed()

    async def __aenter__(self) -> Dialer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
