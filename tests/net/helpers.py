"""Loopback TLS with self-signed Ed25519 certificates from cocoon.tee.tls, and test handlers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon import net, wire
from cocoon.tee.tls import create_ssl_context, make_plain_certificate, pem_pair

FAST = net.NetConfig(
    connect_timeout=2.0,
    handshake_timeout=2.0,
    ping_interval=0.2,
    idle_timeout=0.6,
    stall_timeout=0.5,
    close_timeout=0.5,
    backoff_initial=0.05,
    backoff_max=0.2,
)
USAGE = wire.Usage(prompt_tokens=2, cached_tokens=0, completion_tokens=3, reasoning_tokens=0)


@dataclass(frozen=True)
class Node:
    server_ctx: ssl.SSLContext
    client_ctx: ssl.SSLContext
    public_key: bytes


def make_node(name: str) -> Node:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = make_plain_certificate(
        key, common_name=name, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    )
    cert_pem, key_pem = pem_pair(key, cert)
    raw = key.public_key().public_bytes_raw()
    return Node(
        create_ssl_context(server=True, cert_pem=cert_pem, key_pem=key_pem),
        create_ssl_context(server=False, cert_pem=cert_pem, key_pem=key_pem),
        raw,
    )


def public_key_verifier(der: bytes) -> bytes:
    """The 'any' policy: accept every certificate, attest its Ed25519 key."""
    return x509.load_der_x509_certificate(der).public_key().public_bytes_raw()  # type: ignore[union-attr]


@dataclass
class Recorder:
    """A handler that serves ``/echo`` streams (one chunk per line of the body) and records calls."""

    chunk_delay: float = 0.0
    refuse: str | None = None
    connected: list[net.NodeConnection] = field(default_factory=list)
    disconnected: list[BaseException | None] = field(default_factory=list)
    notifies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_flags: list[bool] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if self.refuse:
            raise net.HandshakeRefused(self.refuse)
        self.connected.append(conn)

    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        req = stream.request
        if req.endpoint == "/fail":
            raise RuntimeError("boom")
        if req.endpoint == "/big":
            await stream.send_head(200)
            await stream.send_chunk(bytes(range(256)) * int(req.body))
            await stream.send_end(USAGE)
            return
        if req.endpoint == "/missing":
            await stream.send_error(wire.ErrorCode.NOT_FOUND, "no such model")
            return
        await stream.send_head(200, (("x-model", req.model),))
        self.stream_started.set()
        try:
            if req.endpoint == "/forever":
                while True:
                    await stream.send_chunk(b"tick")
                    await asyncio.sleep(0.01)
            for line in req.body.split(b"\n"):
                await stream.send_chunk(line)
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
        except asyncio.CancelledError:
            self.cancelled_flags.append(stream.cancelled.is_set())
            self.stream_cancelled.set()
            raise
        await stream.send_end(USAGE, {"worker": "w1"})

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if method == "echo":
            return dict(params)
        if method == "sleep":
            await asyncio.sleep(params["s"])
            return {}
        if method == "crash":
            raise ValueError("secret internals")
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, f"unknown {method}")

    async def on_notify(self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        self.notifies.append((method, dict(params)))

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.disconnected.append(exc)
        self.gone.set()


@dataclass
class Link:
    server: net.Server
    client: net.NodeConnection
    server_handler: Recorder
    client_handler: Recorder

    async def server_side(self) -> net.NodeConnection:
        for _ in range(200):
            if self.server.connections:
                return next(iter(self.server.connections))
            await asyncio.sleep(0.01)
        raise AssertionError("no server-side connection")


async def open_link(
    proxy: Node,
    worker: Node,
    *,
    config: net.NetConfig = FAST,
    server_handler: Recorder | None = None,
    client_handler: Recorder | None = None,
) -> Link:
    sh, ch = server_handler or Recorder(), client_handler or Recorder()
    server = await net.serve(
        "127.0.0.1",
        0,
        ssl_context=proxy.server_ctx,
        verifier=public_key_verifier,
        role=wire.Role.PROXY,
        info={"name": "proxy"},
        handler=sh,
        config=config,
    )
    try:
        client = await net.dial(
            "127.0.0.1",
            server.port,
            ssl_context=worker.client_ctx,
            verifier=public_key_verifier,
            role=wire.Role.WORKER,
            info={"model": "smol"},
            handler=ch,
            config=config,
        )
    except BaseException:
        await server.aclose()
        raise
    return Link(server, client, sh, ch)


def stream_args(endpoint: str = "/echo", body: bytes = b"a\nb\nc", **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "endpoint": endpoint,
        "model": "smol",
        "body": body,
        "max_coefficient": 4000,
        "max_tokens": 100,
        "timeout": 30.0,
        "request_id": b"r" * 32,
        "meta": {},
    }
    args.update(kw)
    return args


async def collect(stream: net.OutgoingStream) -> list[net.ResponseEvent]:
    return [event async for event in stream]
