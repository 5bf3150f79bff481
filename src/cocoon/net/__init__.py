"""cocoon.net — node-to-node links over RA-TLS (asyncio), speaking :mod:`cocoon.wire`.

    server = await serve(host, port, ssl_context=..., verifier=..., role=..., info=..., handler=...)
    conn = await dial(host, port, ssl_context=..., verifier=..., role=..., info=..., handler=...)
    async for event in await conn.open_stream(endpoint=..., model=..., body=..., ...): ...

Links are made through a :class:`Links` (``TCP_LINKS``, or a :class:`MemoryHub` for tests without
sockets). TLS contexts come from :func:`cocoon.tee.tls.create_ssl_context`; after the TLS handshake the peer
certificate (DER) goes to the caller's ``verifier``, whose result becomes ``peer.attestation``.
"""

from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, Verifier
from cocoon.net.dialer import Dialer, dial
from cocoon.net.errors import (
    ConnectError,
    ConnectionLost,
    HandshakeRefused,
    LinkClosed,
    NetError,
    NetTimeout,
    QueryFailed,
    StreamCancelled,
    TooBusy,
    map_exceptions,
)
from cocoon.net.handler import NullHandler
from cocoon.net.links import TCP_LINKS, Links, Listener, TcpLinks
from cocoon.net.memory import MemoryHub, MemoryListener, memory_pair
from cocoon.net.peer import PeerInfo
from cocoon.net.server import Server, serve
from cocoon.net.streams import IncomingStream, OutgoingStream, ResponseEvent

__all__ = [
    "DEFAULT_CONFIG",
    "TCP_LINKS",
    "ConnectError",
    "ConnectionLost",
    "Dialer",
    "Handler",
    "HandshakeRefused",
    "IncomingStream",
    "LinkClosed",
    "Links",
    "Listener",
    "MemoryHub",
    "MemoryListener",
    "NetConfig",
    "NetError",
    "NetTimeout",
    "NodeConnection",
    "NullHandler",
    "OutgoingStream",
    "PeerInfo",
    "QueryFailed",
    "ResponseEvent",
    "Server",
    "StreamCancelled",
    "TcpLinks",
    "TooBusy",
    "Verifier",
    "dial",
    "map_exceptions",
    "memory_pair",
    "serve",
]
