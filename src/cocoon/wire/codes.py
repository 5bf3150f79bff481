"""Enumerations shared by messages and errors: node roles and stream/query error codes."""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "Role"]


class Role(enum.Enum):
    """What a node is; announced in :class:`~cocoon.wire.messages.Hello`."""

    __hash__ = object.__hash__  # identity hash in C (members are singletons)

    CLIENT = "client"
    PROXY = "proxy"
    WORKER = "worker"


class ErrorCode(enum.IntEnum):
    """Why a query or stream failed. HTTP-like values so services can map them to statuses 1:1."""

    BAD_REQUEST = 400
    PAYMENT_REQUIRED = 402
    NOT_FOUND = 404
    BUSY = 429
    CANCELLED = 499
    INTERNAL = 500
    UNAVAILABLE = 502
    TIMEOUT = 504
    PROTOCOL = 1000
