"""Reading a request body: JSON only, bounded while it is read (never buffered past the limit).

The reader works on the raw ASGI ``receive`` so the hot routes (:mod:`cocoon.client.hot`) and the
FastAPI routes share it; a ``Request`` is only unwrapped to its ``receive`` and headers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from cocoon.oai import ApiError, ErrorKind

__all__ = ["is_json_media_type", "parse_json", "read_body", "read_json", "receive_body", "receive_json"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<x>+json`` (parameters such as charset allowed)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_large(limit: int) -> ApiError:
    return ApiError(ErrorKind.REQUEST_TOO_LARGE, f"request body larger than {limit} bytes")


def _not_json() -> ApiError:
    return ApiError(
        ErrorKind.UNSUPPORTED_MEDIA_TYPE, "the request body must be JSON (Content-Type: application/json)"
    )


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body from ASGI ``receive``, or ``request_too_large`` as soon as more than ``limit`` bytes
    have arrived (``declared``: the Content-Length header). ``ClientDisconnect`` if the app left."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body  # the common case: the whole body in one message
    parts: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":
            raise ClientDisconnect
        size += len(body)
        if size > limit:
            raise _too_large(limit)
        parts.append(body)
        if not message.get("more_body", False):
            return b"".join(parts)
        message = await receive()
        body = message.get("body", b"")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``request_too_large`` as soon as more than ``limit`` bytes have arrived."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


# NaN/Infinity are not JSON (RFC 8259) and could not be forwarded: refused while parsing. One
# decoder for every body (json.loads builds a new one per call when given parse_constant).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A body as a JSON object (``invalid_request`` otherwise)."""
    try:
        # What json.loads(raw, parse_constant=...) does with bytes, without its per-call decoder.
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except ValueError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, "request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise ApiError(ErrorKind.INVALID_REQUEST, "request body must be a JSON object")
    return body


async def receive_json(
    receive: Receive, content_type: str | None, declared: str | None, limit: int
) -> dict[str, Any]:
    """The body as a JSON object; a web form or ``text/plain`` POST is refused before it is read."""
    if not is_json_media_type(content_type):
        raise _not_json()
    return parse_json(await receive_body(receive, declared, limit))


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """:func:`receive_json` of a FastAPI request."""
    headers = request.headers
    return await receive_json(
        request.receive, headers.get("content-type"), headers.get("content-length"), limit
    )
