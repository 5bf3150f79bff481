"""Listening sockets are created as TCP so asyncio disables Nagle on every accepted connection.

Without IPPROTO_TCP on the socket, asyncio skips TCP_NODELAY and each streamed answer waits ~40 ms
for a delayed ACK (measured: 45 ms vs 8 ms to the first byte of a local fake upstream).
"""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI

from cocoon.core.httpserve import KEEP_ALIVE_S, start_http_server


async def test_http_server_accepts_with_nodelay() -> None:
    server = await start_http_server(FastAPI(), "127.0.0.1", 0)
    try:
        assert server._sock.proto == socket.IPPROTO_TCP
    finally:
        await server.aclose()


async def test_node_server_accepts_with_nodelay() -> None:
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from cocoon import net, wire
    from cocoon.tee.tls import create_ssl_context, make_plain_certificate, pem_pair

    key = ed25519.Ed25519PrivateKey.generate()
    cert_pem, key_pem = pem_pair(key, make_plain_certificate(key, not_before=dt.datetime.now(dt.UTC)))
    server = await net.serve(
        "127.0.0.1",
        0,
        ssl_context=create_ssl_context(server=True, cert_pem=cert_pem, key_pem=key_pem),
        verifier=None,
        role=wire.Role.PROXY,
        info={},
        handler=net.NullHandler(),
    )
    try:
        assert server._sock.proto == socket.IPPROTO_TCP
    finally:
        await server.aclose()


async def test_http_server_keeps_idle_connections_longer_than_clients_do() -> None:
    """A client reusing a kept-alive socket must never race the server closing it: the server's
    keep-alive outlives httpx's (the OpenAI SDKs') 5 s and aiohttp's 15 s idle expiry. With
    uvicorn's own 5 s, about 1 in 256 requests at c=128 had its socket reset under it."""
    server = await start_http_server(FastAPI(), "127.0.0.1", 0)
    try:
        keep_alive = server._server.config.timeout_keep_alive
        assert keep_alive == KEEP_ALIVE_S
        assert keep_alive > max(httpx.Limits().keepalive_expiry or 0, 15) + 30
    finally:
        await server.aclose()
