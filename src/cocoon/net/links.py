"""How a node makes its links, as an interface: over TCP + TLS (production) or in memory (tests).

A service that takes a :class:`Links` can run over sockets or over a
:class:`~cocoon.net.memory.MemoryHub` without knowing which. Both present the node's certificate to
the peer and hand the peer's certificate to the ``verifier``: over memory there is no TLS (no proof
of key possession), but every attestation check on the certificate runs as it does over TCP.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Protocol

from cocoon import wire
from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, Verifier
from cocoon.net.dialer import Dialer
from cocoon.net.server import serve

__all__ = ["TCP_LINKS", "Links", "Listener", "TcpLinks"]


class Listener(Protocol):
    """An accepting endpoint and the links it holds (:class:`~cocoon.net.server.Server` is one)."""

    host: str
    port: int

    @property
    def connections(self) -> frozenset[NodeConnection]: ...

    @property
    def closed(self) -> bool: ...

    def statistics(self) -> dict[str, Any]: ...

    def set_info(self, info: Mapping[str, Any]) -> None:
        """What links accepted from now on announce in their hello (live ones keep theirs)."""

    async def aclose(self) -> None: ...


class Links(Protocol):
    """Makes listeners and reconnecting dialers. ``certificate`` is the DER the peer will see."""

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> Listener: ...

    def dialer(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> Dialer: ...


class TcpLinks:
    """Sockets and TLS: the certificate travels inside ``ssl_context``."""

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> Listener:
        return await serve(
            host,
            port,
            ssl_context=ssl_context,
            verifier=verifier,
            role=role,
            info=info,
            handler=handler,
            config=config,
        )

    def dialer(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        certificate: bytes,
        verifier: Verifier | None,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: Handler,
        config: NetConfig = DEFAULT_CONFIG,
    ) -> Dialer:
        return Dialer(
            host,
            port,
            ssl_context=ssl_context,
            verifier=verifier,
            role=role,
            info=info,
            handler=handler,
            config=config,
        )


TCP_LINKS = TcpLinks()
