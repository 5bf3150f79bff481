"""Failures as the app sees them: wire error codes to :class:`cocoon.oai.ErrorKind`, JSON and SSE.

The status, OpenAI ``type`` and ``code`` come from the one table in ``cocoon.oai``; this module only
says which kind each wire code from the proxy means.
"""

from __future__ import annotations

import re
import time

from fastapi.responses import JSONResponse

from cocoon.oai import ApiError, ErrorKind, encode_sse
from cocoon.oai.sse import SSE_DONE
from cocoon.wire import ErrorCode

__all__ = ["error_response", "from_wire", "kind_of", "sse_error"]

_KIND_OF: dict[ErrorCode, ErrorKind] = {
    ErrorCode.BAD_REQUEST: ErrorKind.INVALID_REQUEST,
    ErrorCode.PAYMENT_REQUIRED: ErrorKind.INSUFFICIENT_FUNDS,
    ErrorCode.NOT_FOUND: ErrorKind.MODEL_NOT_FOUND,
    ErrorCode.BUSY: ErrorKind.SERVER_BUSY,
    ErrorCode.CANCELLED: ErrorKind.CANCELLED,
    ErrorCode.INTERNAL: ErrorKind.INTERNAL_ERROR,
    ErrorCode.UNAVAILABLE: ErrorKind.UPSTREAM_FAILED,
    ErrorCode.NOT_READY: ErrorKind.PROXY_UNAVAILABLE,
    ErrorCode.TIMEOUT: ErrorKind.TIMEOUT,
    ErrorCode.PROTOCOL: ErrorKind.UPSTREAM_FAILED,
    ErrorCode.MODEL_UNAVAILABLE: ErrorKind.MODEL_UNAVAILABLE,
    ErrorCode.UNSUPPORTED_PARAMETER: ErrorKind.UNSUPPORTED_PARAMETER,
    ErrorCode.MAX_COEFFICIENT_TOO_LOW: ErrorKind.MAX_COEFFICIENT_TOO_LOW,
    ErrorCode.RATE_LIMITED: ErrorKind.RATE_LIMIT_EXCEEDED,
}
_PARAM_OF: dict[ErrorKind, str] = {
    ErrorKind.MODEL_NOT_FOUND: "model",
    ErrorKind.MODEL_UNAVAILABLE: "model",
    ErrorKind.MAX_COEFFICIENT_TOO_LOW: "max_coefficient",
}
_NAMED_PARAM = re.compile(r"`([A-Za-z0-9_.\[\]-]{1,64})`")
# A proxy from before MAX_COEFFICIENT_TOO_LOW said it only in words (as a BAD_REQUEST).
_COEFFICIENT_WORDS = re.compile(r"max_coefficient")


def kind_of(code: int, message: str = "") -> ErrorKind:
    try:
        kind = _KIND_OF[ErrorCode(code)]
    except ValueError:
        return ErrorKind.UPSTREAM_FAILED
    if kind is ErrorKind.INVALID_REQUEST and _COEFFICIENT_WORDS.search(message):
        return ErrorKind.MAX_COEFFICIENT_TOO_LOW
    return kind


def from_wire(code: int, message: str) -> ApiError:
    """The app-facing error for a typed wire error from the proxy."""
    kind = kind_of(code, message)
    named = _NAMED_PARAM.search(message)
    # A parameter named in backticks (wire.ErrorCode's convention) is the error's `param`.
    named_ok = kind in (ErrorKind.UNSUPPORTED_PARAMETER, ErrorKind.INVALID_REQUEST)
    param = _PARAM_OF.get(kind) or (named.group(1) if named and named_ok else None)
    return ApiError(kind, message, param=param)


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def sse_error(exc: ApiError) -> bytes:
    """An error event mid-stream (the status is already 200), then ``[DONE]``."""
    payload = exc.body()
    payload["error"]["created"] = int(time.time())
    return encode_sse(payload) + SSE_DONE
