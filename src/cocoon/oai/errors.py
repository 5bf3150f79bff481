"""The one table of OpenAI-shaped errors: each kind has its HTTP status, OpenAI ``type`` and ``code``.

    CocoonError
    └── OaiError           the OpenAI protocol was broken (bad SSE, bad usage), or an error to answer
        └── ApiError       an error to be answered to the app: ``kind``, ``message``, ``param``

Every service answers HTTP errors as ``{"error": {"message", "type", "code", "param"}}`` built by
:func:`error_body`; the ``code`` is the :class:`ErrorKind` value, so an app can tell, for example,
``model_not_found`` (404, retrying is pointless) from ``model_unavailable`` (503, try later).
Messages are clipped and never carry internals such as hex addresses.
"""

from __future__ import annotations

import enum
import re
from typing import Any, NamedTuple

from cocoon.errors import CocoonError

__all__ = ["ApiError", "ErrorKind", "OaiError", "error_body", "error_status", "error_type", "kind_for_status"]


class ErrorKind(enum.StrEnum):
    """Why a request failed; the value is the OpenAI ``code`` the app sees."""

    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    MAX_COEFFICIENT_TOO_LOW = "max_coefficient_too_low"
    INVALID_API_KEY = "invalid_api_key"
    ADMIN_TOKEN_REQUIRED = "admin_token_required"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BUDGET_EXCEEDED = "budget_exceeded"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    FORBIDDEN_HOST = "forbidden_host"
    UNKNOWN_URL = "unknown_url"
    NOT_FOUND = "not_found"
    MODEL_NOT_FOUND = "model_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"
    UPSTREAM_FAILED = "upstream_failed"
    PROXY_UNAVAILABLE = "proxy_unavailable"
    MODEL_UNAVAILABLE = "model_unavailable"
    SERVER_BUSY = "server_busy"
    TIMEOUT = "timeout"


class _Row(NamedTuple):
    status: int
    type: str


_K = ErrorKind
_TABLE: dict[ErrorKind, _Row] = {
    _K.INVALID_REQUEST: _Row(400, "invalid_request_error"),
    _K.UNSUPPORTED_PARAMETER: _Row(400, "invalid_request_error"),
    # 400, not 429: retrying does not help (and 429 makes the SDKs retry); raise max_coefficient.
    _K.MAX_COEFFICIENT_TOO_LOW: _Row(400, "invalid_request_error"),
    _K.INVALID_API_KEY: _Row(401, "authentication_error"),
    _K.ADMIN_TOKEN_REQUIRED: _Row(401, "authentication_error"),
    _K.INSUFFICIENT_FUNDS: _Row(402, "insufficient_quota"),
    _K.BUDGET_EXCEEDED: _Row(402, "insufficient_quota"),
    _K.FORBIDDEN_ORIGIN: _Row(403, "permission_error"),
    _K.FORBIDDEN_HOST: _Row(403, "permission_error"),
    _K.UNKNOWN_URL: _Row(404, "invalid_request_error"),
    _K.NOT_FOUND: _Row(404, "not_found_error"),
    _K.MODEL_NOT_FOUND: _Row(404, "invalid_request_error"),
    _K.METHOD_NOT_ALLOWED: _Row(405, "invalid_request_error"),
    _K.CONFLICT: _Row(409, "invalid_request_error"),
    _K.REQUEST_TOO_LARGE: _Row(413, "invalid_request_error"),
    _K.UNSUPPORTED_MEDIA_TYPE: _Row(415, "invalid_request_error"),
    _K.RATE_LIMIT_EXCEEDED: _Row(429, "rate_limit_error"),
    _K.CANCELLED: _Row(499, "invalid_request_error"),
    _K.INTERNAL_ERROR: _Row(500, "server_error"),
    _K.UPSTREAM_FAILED: _Row(502, "server_error"),
    _K.PROXY_UNAVAILABLE: _Row(503, "server_error"),
    _K.MODEL_UNAVAILABLE: _Row(503, "server_error"),
    _K.SERVER_BUSY: _Row(503, "server_error"),
    _K.TIMEOUT: _Row(504, "server_error"),
}
_BY_STATUS: dict[int, ErrorKind] = {
    400: _K.INVALID_REQUEST,
    401: _K.INVALID_API_KEY,
    402: _K.INSUFFICIENT_FUNDS,
    403: _K.FORBIDDEN_ORIGIN,
    404: _K.NOT_FOUND,
    405: _K.METHOD_NOT_ALLOWED,
    409: _K.CONFLICT,
    413: _K.REQUEST_TOO_LARGE,
    415: _K.UNSUPPORTED_MEDIA_TYPE,
    429: _K.RATE_LIMIT_EXCEEDED,
    499: _K.CANCELLED,
    502: _K.UPSTREAM_FAILED,
    503: _K.SERVER_BUSY,
    504: _K.TIMEOUT,
}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
MAX_MESSAGE = 1000


def error_status(kind: ErrorKind) -> int:
    return _TABLE[kind].status


def error_type(kind: ErrorKind) -> str:
    return _TABLE[kind].type


def kind_for_status(status: int) -> ErrorKind:
    """The generic kind for an HTTP status (for errors that arrive as a bare status)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return _K.INVALID_REQUEST if 400 <= status < 500 else _K.INTERNAL_ERROR


def error_body(kind: ErrorKind, message: str, *, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "code", "param"}}`` for ``kind``."""
    return {
        "error": {
            "message": _ADDRESS.sub("0x…", message)[:MAX_MESSAGE],
            "type": _TABLE[kind].type,
            "code": kind.value,
            "param": param,
        }
    }


class OaiError(CocoonError):
    """Base of the OpenAI-protocol errors."""


class ApiError(OaiError):
    """An error to answer to the app; the status and type come from the table."""

    def __init__(self, kind: ErrorKind, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param

    @property
    def status(self) -> int:
        return _TABLE[self.kind].status

    def body(self) -> dict[str, Any]:
        return error_body(self.kind, self.message, param=self.param)
