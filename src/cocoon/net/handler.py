"""A base for services that implement few of the link callbacks (:class:`~cocoon.net.connection.Handler`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cocoon.net.connection import Handler, NodeConnection
from cocoon.net.errors import QueryFailed
from cocoon.net.peer import PeerInfo
from cocoon.net.streams import IncomingStream
from cocoon.wire import ErrorCode

__all__ = ["Handler", "NullHandler", "PeerInfo"]


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
