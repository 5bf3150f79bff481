"""Links over in-memory transports: the same NodeConnection code, no sockets, no TLS.

:func:`memory_pair` joins two handlers directly; a :class:`MemoryHub` gives ``host:port`` names that
services listen on and dial, the way they do over TCP (it is a :class:`~cocoon.net.links.Links`).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Mapping
from typing import Any

from cocoon import wire
from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, Verifier, establish
from cocoon.net.dialer import Dialer, _dialer_on_connect
from cocoon.net.errors import ConnectError, HandshakeRefused
from cocoon.net.transport import memory_transport_pair

__all__ = ["MemoryHub", "MemoryListener", "memory_pair"]


async def memory_pair(
    *,
    dialer_role: wire.Role,
    dialer_info: Mapping[str, Any],
    dialer_handler: Handler,
    acceptor_role: wire.Role,
    acceptor_info: Mapping[str, Any],
    acceptor_handler: Handler,
    dialer_attestation: object = None,
    acceptor_attestation: object = None,
    config: NetConfig = DEFAULT_CONFIG,
) -> tuple[NodeConnection, NodeConnection]:
    """(dialer side, acceptor side), both running; ``*_attestation`` is what the *other* side sees
    as ``peer.attestation`` (the stand-in for a verified certificate)."""
    a, b = memory_transport_pair(a_certificate=b"memory-dialer", b_certificate=b"memory-acceptor")
    async with asyncio.TaskGroup() as tg:
        dialing = tg.create_task(
            establish(
                a,
                dialer=True,
                role=dialer_role,
                info=dialer_info,
                handler=dialer_handler,
                verifier=lambda _der: acceptor_attestation,
                config=config,
            )
        )
        accepting = tg.create_task(
            establish(
                b,
                dialer=False,
                role=acceptor_role,
                info=acceptor_info,
                handler=acceptor_handler,
                verifier=lambda _der: dialer_attestation,
                config=config,
            )
        )
    dialer, acceptor = dialing.result(), accepting.result()
    acceptor._start()
    dialer._start()
    try:
        await _dialer_on_connect(dialer, dialer_handler)
    except BaseException:
        await acceptor.aclose("dialer refused")
        raise
    return dialer, acceptor


class MemoryListener:
    """A name on a :class:`MemoryHub` that accepts links, like a listening socket."""

    def __init__(
        self,
        hub: MemoryHub,
        host: str,
        port: int,
        *,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig,
    ) -> None:
        self._hub = hub
        self.host, self.port = host, port
        self.certificate = certificate
        self.verifier = verifier
        self.role = role
        self.info = dict(info)
        self.handler = handler
        self.config = config
        self._connections: set[NodeConnection] = set()
        self._closing = False
        self.accepted = 0
        self.refused = 0

    @property
    def connections(self) -> frozenset[NodeConnection]:
        return frozenset(c for c in self._connections if not c.closed)

    @property
    def closed(self) -> bool:
        return self._closing

    def set_info(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def statistics(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "connections": len(self.connections),
            "accepted": self.accepted,
            "refused": self.refused,
            "closed": self._closing,
        }

    def _adopt(self, conn: NodeConnection) -> None:
        self._connections = {c for c in self._connections if not c.closed}
        self._connections.add(conn)
        conn._start()

    async def aclose(self) -> None:
        """Stop accepting and close every link. Idempotent."""
        self._closing = True
        self._hub._forget(self)
        await asyncio.gather(
            *(c.aclose("server shutting down") for c in list(self._connections)), return_exceptions=True
        )


class MemoryHub:
    """In-memory "host:port" names: :class:`~cocoon.net.links.Links` without sockets or TLS."""

    def __init__(self) -> None:
        self._listeners: dict[str, MemoryListener] = {}
        self._ports = itertools.count(40000)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> MemoryListener:
        port = port or next(self._ports)
        name = f"{host}:{port}"
        if name in self._listeners:
            raise ConnectError(f"{name} is already listening")
        listener = MemoryListener(
            self,
            host,
            port,
            certificate=certificate,
            verifier=verifier,
            role=role,
            info=info,
            handler=handler,
            config=config,
        )
        self._listeners[name] = listener
        return listener

    def _forget(self, listener: MemoryListener) -> None:
        name = f"{listener.host}:{listener.port}"
        if self._listeners.get(name) is listener:
            del self._listeners[name]

    async def connect(
        self,
        host: str,
        port: int,
        *,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> NodeConnection:
        """One running link to the listener at ``host:port`` (like :func:`~cocoon.net.dialer.dial`)."""
        listener = self._listeners.get(f"{host}:{port}")
        if listener is None or listener.closed:
            raise ConnectError(f"nothing listens on memory {host}:{port}")
        ours, theirs = memory_transport_pair(a_certificate=certificate, b_certificate=listener.certificate)
        dialing, accepting = await asyncio.gather(
            establish(
                ours, dialer=True, role=role, info=info, handler=handler, verifier=verifier, config=config
            ),
            establish(
                theirs,
                dialer=False,
                role=listener.role,
                info=listener.info,
                handler=listener.handler,
                verifier=listener.verifier,
                config=listener.config,
            ),
            return_exceptions=True,
        )
        if isinstance(accepting, BaseException):
            listener.refused += 1
            if isinstance(dialing, NodeConnection):
                await dialing.aclose("refused")
        if isinstance(dialing, BaseException):
            if isinstance(accepting, NodeConnection):
                await accepting.aclose("the dialer gave up")
            raise dialing
        if isinstance(accepting, BaseException):
            raise HandshakeRefused(f"refused by the peer: {accepting}")
        listener.accepted += 1
        listener._adopt(accepting)
        dialing._start()
        await _dialer_on_connect(dialing, handler)
        return dialing

    def dialer(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> Dialer:
        async def connect() -> NodeConnection:
            return await self.connect(
                host,
                port,
                certificate=certificate,
                verifier=verifier,
                role=role,
                info=info,
                handler=handler,
                config=config,
            )

        return Dialer(
            host,
            port,
            ssl_context=None,
            verifier=verifier,
            role=role,
            info=info,
            handler=handler,
            config=config,
            connect=connect,
        )
