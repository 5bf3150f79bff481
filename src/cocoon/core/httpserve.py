"""Run an ASGI app with uvicorn inside the current event loop, on a port that may be 0.

Services own their HTTP servers as tasks: ``start`` returns once the socket is bound (so callers
know the real port), ``aclose`` asks uvicorn to exit and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import uvicorn

from cocoon.errors import ConfigError

__all__ = ["HttpServer", "ListenError", "start_http_server"]


class ListenError(ConfigError):
    """The configured address cannot be listened on (in use, not ours, no permission)."""


class HttpServer:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket) -> None:
        self._server = server
        self._task = task
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self.host: str = sock.getsockname()[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def aclose(self) -> None:
        self._server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await self._task
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        finally:
            self._sock.close()


KEEP_ALIVE_S = 75  # as nginx's default keepalive_timeout


async def start_http_server(
    app: Any, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> HttpServer:
    """Bind ``host:port`` now (port 0 = any free port) and serve ``app`` in a background task."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (accepted
    # sockets inherit it); without it Nagle and delayed ACKs add ~40 ms to every streamed answer.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    # No X-Forwarded-* rewriting (a node's port is its own, never behind a trusted reverse proxy) and
    # no Server header: both cost CPU on every request and say nothing a client needs.
    config = uvicorn.Config(
        app,
        # Idle kept-alive connections outlive the clients' own expiry (httpx and the OpenAI SDKs: 5 s,
        # aiohttp: 15 s): with uvicorn's 5 s a client reusing a socket the server was closing at that
        # moment had its request reset (a ReadError the app sees as a failed request).
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=3,
        proxy_headers=False,
        server_header=False,
    )
    if ssl_context is not None:
        config.load()
        config.ssl = ssl_context
    server = uvicorn.Server(config)
    # The service that owns this server decides about signals; uvicorn must not take them over.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http:{host}:{port}")
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise RuntimeError("HTTP server exited during start-up")
        await asyncio.sleep(0.01)
    return HttpServer(server, task, sock)
