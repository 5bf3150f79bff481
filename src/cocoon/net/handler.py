"""What a service implements to live on a link, and what it learns about the peer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cocoon.net.errors import QueryFailed
from cocoon.wire import ErrorCode, Role

if TYPE_CHECKING:
    from cocoon.net.connection import NodeConnection
    from cocoon.net.streams import IncomingStream

__all__ = ["Handler", "NullHandler", "PeerInfo"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """The other end of a link, as established by the TLS verifier and the Hello exchange."""

    role: Role
    version: int  # negotiated protocol version
    info: Mapping[str, Any]  # the peer's Hello announce (validated by the service)
    attestation: object  # whatever the verifier returned for the peer certificate
    address: str  # "host:port" or "memory:x"


class Handler(Protocol):
    """Callbacks of one link. Each runs in a task owned by the connection."""

    async def on_connect(self, conn: NodeConnection) -> None:
        """After the Hello exchange; raising refuses the peer (it gets HandshakeRefused).

        On the acceptor it runs before HelloAck, so it cannot send; on the dialer it runs once the
        link is open and may query. Streams, queries and notifies from the peer wait until it returns.
        """

    async def on_stream(self, conn: NodeConnection, stream: IncomingStream) -> None:
        """Serve one request stream. Cancelled if the peer cancels it or the link dies."""

    async def on_query(
        self, conn: NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Answer a query; raise QueryFailed(code, message) to answer with an error."""
        ...

    async def on_notify(self, conn: NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        """A one-way message. Called in arrival order, one at a time."""

    async def on_disconnect(self, conn: NodeConnection, exc: BaseException | None) -> None:
        """The link is gone; ``exc`` is None after a graceful close."""


class NullHandler:
    """Refuses streams and queries, ignores notifies; a base for handlers that need few callbacks."""

    async def on_connect(self, conn: NodeConnection) -> None:
        return None

    async def on_stream(self, conn: NodeConnection, stream: IncomingStream) -> None:
        await stream.send_error(ErrorCode.NOT_FOUND, "this node serves no requests")

    async def on_query(
        self, conn: NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        raise QueryFailed(ErrorCode.NOT_FOUND, f"unknown query {method!r}")

    async def on_notify(self, conn: NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        return None

    async def on_disconnect(self, conn: NodeConnection, exc: BaseException | None) -> None:
        return None
