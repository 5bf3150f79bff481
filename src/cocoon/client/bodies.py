"""Reading a request body: JSON only, bounded while it is read (never buffered past the limit)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from cocoon.oai import ApiError, ErrorKind

__all__ = ["is_json_media_type", "read_json"]


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<x>+json`` (parameters such as charset allowed)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_large(limit: int) -> ApiError:
    return ApiError(ErrorKind.REQUEST_TOO_LARGE, f"request body larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``request_too_large`` as soon as more than ``limit`` bytes have arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; a web form or ``text/plain`` POST is refused before it is read."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(
            ErrorKind.UNSUPPORTED_MEDIA_TYPE, "the request body must be JSON (Content-Type: application/json)"
        )
    raw = await read_body(request, limit)
    try:
        # NaN/Infinity are not JSON (RFC 8259) and could not be forwarded: refuse them here.
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, "request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise ApiError(ErrorKind.INVALID_REQUEST, "request body must be a JSON object")
    return body
