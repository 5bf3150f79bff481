"""One place that turns failures into OpenAI-shaped HTTP errors for the app.

Every path of the client's API answers errors as ``{"error": {"message", "type", "param", "code"}}``
with a status from this table; messages carry no internals (addresses, stack frames).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

from cocoon.wire import ErrorCode

__all__ = ["ApiError", "error_body", "error_response", "from_wire_code"]

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    404: "not_found_error",
    429: "rate_limit_exceeded",
    499: "cancelled",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "timeout",
}

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


class ApiError(Exception):
    """An error to be answered to the app with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def _sanitize(message: str) -> str:
    return _ADDRESS.sub("0x…", message)[:1000]


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": _sanitize(message),
            "type": _ERROR_TYPES.get(status, "internal_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.status, exc.message, param=exc.param, code=exc.code), status_code=exc.status
    )


_WIRE_TO_HTTP: dict[int, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.PAYMENT_REQUIRED: 402,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.BUSY: 429,
    ErrorCode.CANCELLED: 499,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 502,
    ErrorCode.TIMEOUT: 504,
}


def from_wire_code(code: int, message: str) -> ApiError:
    """Map a typed wire error from the proxy to the app-facing status."""
    status = _WIRE_TO_HTTP.get(int(code), 502)
    return ApiError(status, message, code=ErrorCode(code).name.lower() if code in _WIRE_TO_HTTP else None)
