"""Guarding a local HTTP port against web pages: Host and Origin checks, as Ollama does.

A page the user visits can make the browser send requests to ``127.0.0.1`` (a cross-origin "simple"
POST needs no preflight) or, by DNS rebinding, make ``evil.example`` resolve to it. Two checks stop
both without bothering non-browser callers (SDKs, curl, the CLI), which send no ``Origin``:

- **Host**: a name must be ``localhost``, end in ``.localhost``, or be configured; an IP literal is
  always fine (rebinding needs a name). ``Host: evil.example`` is refused.
- **Origin**: absent is fine; present, it must be a loopback origin (``http://localhost:3000``,
  ``http://127.0.0.1``, ``http://[::1]``) or match a configured one (``fnmatch`` patterns, ``*``).

:class:`LocalHttpGuard` is a plain ASGI wrapper (a few header lookups per request, no
``BaseHTTPMiddleware``), so the client API, the proxy's stats port and a worker's health port can
all put it in front of their app. Pages it allows also get CORS answers (a preflight, and the
``Access-Control-Allow-Origin`` header), so a local web app can read what it asked for.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cocoon.oai import ErrorKind, error_body, error_status

__all__ = ["LocalHttpGuard", "LocalHttpPolicy", "host_allowed", "origin_allowed", "refusal"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LocalHttpPolicy:
    """Extra hosts and origins to accept besides loopback (lowercase; ``*`` accepts any)."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def of(cls, hosts: Iterable[str] = (), origins: Iterable[str] = ()) -> LocalHttpPolicy:
        return cls(
            frozenset(h.strip().lower() for h in hosts if h.strip()),
            frozenset(o.strip().lower().rstrip("/") for o in origins if o.strip()),
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` → the host, lowercase, without brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


# Callers send the same few Host/Origin values over and over: remember the verdicts (bounded).
@functools.lru_cache(maxsize=512)
def host_allowed(host_header: str | None, policy: LocalHttpPolicy) -> bool:
    if not host_header:
        return True  # HTTP/1.0 without Host: not a browser
    host = _split_host(host_header)
    if "*" in policy.allowed_hosts or host in policy.allowed_hosts:
        return True
    return _is_ip(host) or _is_loopback_name(host)


@functools.lru_cache(maxsize=512)
def origin_allowed(origin: str | None, policy: LocalHttpPolicy) -> bool:
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if any(fnmatch.fnmatchcase(origin, pattern) for pattern in policy.allowed_origins):
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and _is_loopback_name(_split_host(parts.netloc))


def refusal(host: str | None, origin: str | None, policy: LocalHttpPolicy) -> ErrorKind | None:
    """Why a request with these headers must be refused, or None."""
    if not host_allowed(host, policy):
        return ErrorKind.FORBIDDEN_HOST
    if not origin_allowed(origin, policy):
        return ErrorKind.FORBIDDEN_ORIGIN
    return None


_MESSAGES = {
    ErrorKind.FORBIDDEN_HOST: "this Host is not allowed (DNS rebinding protection); add it to allowed_hosts",
    ErrorKind.FORBIDDEN_ORIGIN: "requests from this web origin are not allowed; add it to allowed_origins",
}


_MAX_VERDICTS = 512


class LocalHttpGuard:
    """ASGI wrapper: answers 403 in OpenAI's error shape to what :func:`refusal` refuses."""

    def __init__(self, app: AsgiApp, policy: LocalHttpPolicy) -> None:
        self.app = app
        self.policy = policy
        # Verdicts by raw (Host, Origin): callers send the same few over and over (bounded).
        self._verdicts: dict[tuple[bytes | None, bytes | None], ErrorKind | None] = {}

    def _refusal(self, host: bytes | None, origin: bytes | None) -> ErrorKind | None:
        key = (host, origin)
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        kind = refusal(
            None if host is None else host.decode("latin-1"),
            None if origin is None else origin.decode("latin-1"),
            self.policy,
        )
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[key] = kind
        return kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = raw_origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                raw_origin = value
        kind = self._refusal(host, raw_origin)
        origin = None if raw_origin is None else raw_origin.decode("latin-1")
        if kind is not None:
            await _send_json(send, error_status(kind), error_body(kind, _MESSAGES[kind]))
        elif origin is None:
            await self.app(scope, receive, send)
        elif scope["method"] == "OPTIONS":
            asked = next((v for n, v in scope["headers"] if n == b"access-control-request-headers"), b"")
            await _preflight(send, origin, asked)
        else:
            await self.app(scope, receive, _with_cors(send, origin))


_CORS_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-max-age", b"600"),
    (b"vary", b"origin"),
]


async def _preflight(send: Send, origin: str, asked_headers: bytes) -> None:
    """An allowed page asks whether it may POST JSON (with the SDK's headers): yes — its Origin
    was checked above, and headers grant nothing the Bearer token does not."""
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-headers", asked_headers or b"authorization, content-type"),
        *_CORS_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    """Let an allowed page read the answer (the browser hides it without this header)."""
    allow = (b"access-control-allow-origin", origin.encode("latin-1"))

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), allow, (b"vary", b"origin")]}
        await send(message)

    return sending


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
