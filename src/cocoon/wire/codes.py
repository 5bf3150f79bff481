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
    """Why a query or stream failed.

    Values below 1000 are HTTP-like; values from 1001 up are reasons an HTTP status alone cannot
    tell apart (each client maps a code to one :class:`cocoon.oai.ErrorKind`, which owns the HTTP
    status and the OpenAI ``type``/``code`` the app sees). An error that names a request parameter
    puts it in backticks in its message (``unsupported parameter `tools```).
    """

    BAD_REQUEST = 400
    PAYMENT_REQUIRED = 402  # the client's funds do not cover the request (insufficient_funds)
    NOT_FOUND = 404  # on a stream: no worker has ever served this model (model_not_found)
    BUSY = 429  # the worker / all workers have no free slot now (server_busy)
    CANCELLED = 499
    INTERNAL = 500
    UNAVAILABLE = 502  # the upstream failed or went away
    NOT_READY = 503  # the node is not serving now (starting, draining, store busy)
    TIMEOUT = 504
    PROTOCOL = 1000
    MODEL_UNAVAILABLE = 1001  # the model is known, but no worker serves it right now
    UNSUPPORTED_PARAMETER = 1002  # the worker cannot serve a parameter (named in the message)
    MAX_COEFFICIENT_TOO_LOW = 1003  # workers exist, all above the request's max_coefficient
    RATE_LIMITED = 1004  # this client sent too many requests (rate_limit_exceeded)

    @classmethod
    def of(cls, reason: str, status: int) -> ErrorCode:
        """The code for an error known by its OpenAI ``code`` (``reason``) and HTTP status: the
        reason decides where it has a code of its own, else the status, else its class (4xx/5xx)."""
        code = _BY_REASON.get(reason)
        if code is not None:
            return code
        try:
            return cls(status)
        except ValueError:
            return cls.BAD_REQUEST if 400 <= status < 500 else cls.INTERNAL


_BY_REASON: dict[str, ErrorCode] = {
    "insufficient_funds": ErrorCode.PAYMENT_REQUIRED,
    "model_not_found": ErrorCode.NOT_FOUND,
    "model_unavailable": ErrorCode.MODEL_UNAVAILABLE,
    "server_busy": ErrorCode.BUSY,
    "workers_busy": ErrorCode.BUSY,
    "unsupported_parameter": ErrorCode.UNSUPPORTED_PARAMETER,
    "max_coefficient_too_low": ErrorCode.MAX_COEFFICIENT_TOO_LOW,
    "rate_limit_exceeded": ErrorCode.RATE_LIMITED,
}
