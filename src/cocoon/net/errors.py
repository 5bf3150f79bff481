"""Errors of node-to-node networking, and the one place lower-level exceptions are translated.

    CocoonError
    └── NetError                  anything that went wrong with a link
        ├── ConnectError          no link could be made (refused, unreachable, TLS failed while dialling)
        ├── HandshakeRefused      TLS was up but the peer was refused: verifier, version, on_connect
        ├── ConnectionLost        an established link broke (reset, EOF, keep-alive timeout, peer protocol error)
        ├── NetTimeout            connect or handshake took longer than its configured timeout
        ├── StreamCancelled       the stream was cancelled (by the peer, or for reading too slowly)
        ├── LinkClosed            used after ``aclose()``: closed by us (not broken)
        ├── TooBusy               our own limit (open streams, pending queries) is reached
        └── QueryFailed           the peer answered a query with an error (``code``, ``message``)

:func:`map_exceptions` converts ``ssl``, ``OSError``, ``TimeoutError`` and wire errors into these,
chaining the original (``raise ... from exc``). ``CancelledError`` is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator

from cocoon.errors import CocoonError
from cocoon.wire import ErrorCode, WireError

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "HandshakeRefused",
    "LinkClosed",
    "NetError",
    "NetTimeout",
    "QueryFailed",
    "StreamCancelled",
    "TooBusy",
    "map_exceptions",
    "translate",
]


class NetError(CocoonError):
    """A node-to-node link failed; the subclass says how."""


class ConnectError(NetError):
    """The link could not be established."""


class HandshakeRefused(NetError):
    """The transport came up but one side refused the other (attestation, version, announce)."""


class ConnectionLost(NetError):
    """An established link broke."""


class NetTimeout(NetError):
    """A connect or handshake timeout expired."""


class StreamCancelled(NetError):
    """The stream was cancelled; nothing more can be sent on it."""


class LinkClosed(NetError):
    """The connection (or server, or dialer) was closed by us and cannot be used any more."""


class TooBusy(NetError):
    """A local limit is reached (open streams, outstanding queries); try later or elsewhere."""


class QueryFailed(NetError):
    """A query was answered with an error. Raise it from ``Handler.on_query`` to answer one."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def translate(exc: BaseException, *, connecting: bool = False) -> NetError | None:
    """The NetError for a lower exception, or None if it is not ours to translate."""
    if isinstance(exc, NetError):
        return exc
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return NetTimeout(f"timed out: {exc}" if str(exc) else "timed out")
    if isinstance(exc, ssl.SSLError):  # before OSError too
        if connecting:
            return HandshakeRefused(f"TLS handshake failed: {exc}")
        return ConnectionLost(f"TLS error: {exc}")
    if isinstance(exc, OSError | EOFError | asyncio.IncompleteReadError):
        detail = f"{type(exc).__name__}: {exc}"
        return ConnectError(detail) if connecting else ConnectionLost(detail)
    if isinstance(exc, WireError):
        return ConnectionLost(f"protocol error: {exc}")
    return None


@contextlib.contextmanager
def map_exceptions(*, connecting: bool = False) -> Iterator[None]:
    """Translate lower exceptions into :class:`NetError`s (see :func:`translate`), chained.

    ``connecting`` picks the family for transport failures: while a link is being made they mean
    :class:`ConnectError` (TLS failures: :class:`HandshakeRefused`); afterwards :class:`ConnectionLost`.
    ``CancelledError`` and programming errors pass through untouched.
    """
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, connecting=connecting)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc
