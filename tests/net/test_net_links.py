"""Loopback TLS links: handshake, streams, queries, cancellation, link loss."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

import pytest

from cocoon import net, wire

from .helpers import (
    FAST,
    USAGE,
    Link,
    Node,
    Recorder,
    collect,
    open_link,
    public_key_verifier,
    stream_args,
)


async def test_hello_exchange_and_peer_info(link: Link, proxy_node: Node, worker_node: Node) -> None:
    peer = link.client.peer
    assert peer.role is wire.Role.PROXY
    assert peer.version == wire.PROTOCOL_VERSION
    assert peer.info == {"name": "proxy"}
    assert peer.attestation == proxy_node.public_key
    assert peer.address.startswith("127.0.0.1:")
    server_side = await link.server_side()
    assert server_side.peer.role is wire.Role.WORKER
    assert server_side.peer.info == {"model": "smol"}
    assert server_side.peer.attestation == worker_node.public_key
    assert link.server_handler.connected == [server_side]
    assert link.client_handler.connected == [link.client]


async def test_version_negotiation_picks_min_of_maxima(proxy_node: Node, worker_node: Node) -> None:
    server_cfg = net.NetConfig(**{**_fast(), "min_version": 1, "max_version": 3})
    client_cfg = net.NetConfig(**{**_fast(), "min_version": 2, "max_version": 5})
    server = await _serve(proxy_node, Recorder(), server_cfg)
    try:
        conn = await _dial(worker_node, server.port, Recorder(), client_cfg)
        assert conn.peer.version == 3
        await conn.aclose()
    finally:
        await server.aclose()


async def test_no_common_version_is_refused(proxy_node: Node, worker_node: Node) -> None:
    server = await _serve(
        proxy_node, Recorder(), net.NetConfig(**{**_fast(), "min_version": 1, "max_version": 1})
    )
    try:
        with pytest.raises(net.HandshakeRefused, match="no common protocol version"):
            await _dial(
                worker_node,
                server.port,
                Recorder(),
                net.NetConfig(**{**_fast(), "min_version": 2, "max_version": 2}),
            )
        assert not server.connections
    finally:
        await server.aclose()


async def test_server_verifier_refuses_peer(proxy_node: Node, worker_node: Node) -> None:
    calls: list[bytes] = []

    def refuse(der: bytes) -> object:
        calls.append(der)
        raise ValueError("image hash not allowed")

    handler = Recorder()
    server = await net.serve(
        "127.0.0.1",
        0,
        ssl_context=proxy_node.server_ctx,
        verifier=refuse,
        role=wire.Role.PROXY,
        info={},
        handler=handler,
        config=FAST,
    )
    try:
        with pytest.raises(net.HandshakeRefused):
            await _dial(worker_node, server.port, Recorder(), FAST)
        assert calls and not handler.connected and server.refused == 1
    finally:
        await server.aclose()


async def test_client_verifier_refuses_server(proxy_node: Node, worker_node: Node) -> None:
    handler = Recorder()
    server = await _serve(proxy_node, handler, FAST)
    try:

        def refuse(der: bytes) -> object:
            raise ValueError("proxy not in the root contract")

        with pytest.raises(net.HandshakeRefused, match="proxy not in the root contract"):
            await net.dial(
                "127.0.0.1",
                server.port,
                ssl_context=worker_node.client_ctx,
                verifier=refuse,
                role=wire.Role.WORKER,
                info={},
                handler=Recorder(),
                config=FAST,
            )
        await asyncio.sleep(0.05)
        assert not handler.connected
    finally:
        await server.aclose()


async def test_on_connect_refusal_reaches_dialer(proxy_node: Node, worker_node: Node) -> None:
    server = await _serve(proxy_node, Recorder(refuse="model hash not allowed"), FAST)
    try:
        with pytest.raises(net.HandshakeRefused, match="model hash not allowed"):
            await _dial(worker_node, server.port, Recorder(), FAST)
    finally:
        await server.aclose()


async def test_client_without_certificate_is_refused(proxy_node: Node) -> None:
    server = await _serve(proxy_node, Recorder(), FAST)
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.verify_mode = ssl.CERT_NONE
    try:
        with pytest.raises(net.NetError):
            await net.dial(
                "127.0.0.1",
                server.port,
                ssl_context=bare,
                verifier=None,
                role=wire.Role.CLIENT,
                info={},
                handler=Recorder(),
                config=FAST,
            )
    finally:
        await server.aclose()


async def test_connect_refused_is_connect_error(worker_node: Node) -> None:
    with pytest.raises(net.ConnectError):
        await _dial(worker_node, _free_port(), Recorder(), FAST)


async def test_one_stream(link: Link) -> None:
    events = await collect(await link.client.open_stream(**stream_args(body=b"x\ny")))
    assert [type(e) for e in events] == [
        wire.ResponseHead,
        wire.ResponseChunk,
        wire.ResponseChunk,
        wire.ResponseEnd,
    ]
    assert events[0].headers == (("x-model", "smol"),)  # type: ignore[union-attr]
    assert [e.data for e in events[1:3]] == [b"x", b"y"]  # type: ignore[union-attr]
    assert events[-1] == wire.ResponseEnd(stream_id=1, usage=USAGE, meta={"worker": "w1"})


async def test_many_concurrent_streams_multiplexed(proxy_node: Node, worker_node: Node) -> None:
    # Keep-alive and stall limits far above what a loaded CI machine needs: this is about multiplexing.
    relaxed = net.NetConfig(**{**_fast(), "ping_interval": 10.0, "idle_timeout": 30.0, "stall_timeout": 20.0})
    link = await open_link(proxy_node, worker_node, config=relaxed)
    link.server_handler.chunk_delay = 0.001

    async def one(i: int) -> list[bytes]:
        body = b"\n".join(f"{i}-{j}".encode() for j in range(20))
        events = await collect(await link.client.open_stream(**stream_args(body=body)))
        assert isinstance(events[-1], wire.ResponseEnd)
        return [e.data for e in events if isinstance(e, wire.ResponseChunk)]

    try:
        results = await asyncio.gather(*(one(i) for i in range(100)))
        for i, chunks in enumerate(results):
            assert chunks == [f"{i}-{j}".encode() for j in range(20)]
        assert link.client.statistics()["streams_open"] == 0
    finally:
        await link.client.aclose()
        await link.server.aclose()


async def test_stream_errors(link: Link) -> None:
    events = await collect(await link.client.open_stream(**stream_args("/missing")))
    assert events == [wire.StreamError(stream_id=1, code=wire.ErrorCode.NOT_FOUND, message="no such model")]
    events = await collect(await link.client.open_stream(**stream_args("/fail")))
    assert len(events) == 1 and isinstance(events[0], wire.StreamError)
    assert events[0].code is wire.ErrorCode.INTERNAL and "boom" not in events[0].message


async def test_big_chunks_are_split(proxy_node: Node, worker_node: Node) -> None:
    cfg = net.NetConfig(**{**_fast(), "max_frame_size": 64 * 1024})
    lk = await open_link(proxy_node, worker_node, config=cfg)
    try:
        events = await collect(await lk.client.open_stream(**stream_args("/big", body=b"1000")))
        data = b"".join(e.data for e in events if isinstance(e, wire.ResponseChunk))
        assert data == bytes(range(256)) * 1000  # one 256 KB send_chunk
        assert sum(isinstance(e, wire.ResponseChunk) for e in events) == 8
        with pytest.raises(wire.LocalProtocolError, match="does not fit one frame"):
            await lk.client.open_stream(**stream_args(body=bytes(100_000)))
        assert await lk.client.query("echo", {}) == {}  # the link survived the refusal
    finally:
        await lk.client.aclose()
        await lk.server.aclose()


async def test_cancel_propagates_to_handler(link: Link) -> None:
    out = await link.client.open_stream(**stream_args("/forever"))
    first = await anext(out)
    assert isinstance(first, wire.ResponseHead)
    await out.cancel("app went away")
    await asyncio.wait_for(link.server_handler.stream_cancelled.wait(), 2)
    assert link.server_handler.cancelled_flags == [True]
    assert [e async for e in out] == []  # our iteration ends; late chunks are dropped
    # The link is still healthy.
    assert (await link.client.query("echo", {"ok": 1})) == {"ok": 1}


async def test_link_killed_mid_stream_raises_connection_lost_promptly(link: Link) -> None:
    out = await link.client.open_stream(**stream_args("/forever"))
    await anext(out)
    server_side = await link.server_side()
    server_side._transport.abort()  # the peer dies without a word
    started = time.monotonic()
    with pytest.raises(net.ConnectionLost):
        async for _ in out:
            pass
    assert time.monotonic() - started < 1.0
    await asyncio.wait_for(link.server_handler.stream_cancelled.wait(), 2)
    await asyncio.wait_for(link.client.wait_closed(), 2)
    assert isinstance(link.client_handler.disconnected[0], net.ConnectionLost)
    with pytest.raises(net.ConnectionLost):
        await link.client.open_stream(**stream_args())


async def test_queries_and_notifies(link: Link) -> None:
    server_side = await link.server_side()
    assert await link.client.query("echo", {"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(net.QueryFailed) as info:
        await link.client.query("nope", {})
    assert info.value.code is wire.ErrorCode.NOT_FOUND
    with pytest.raises(net.QueryFailed) as crash:
        await server_side.query("crash", {})
    assert crash.value.code is wire.ErrorCode.INTERNAL and "secret" not in crash.value.message
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await link.client.query("sleep", {"s": 0.3})
    # A late answer to an abandoned query is ignored, the link stays up.
    await asyncio.sleep(0.35)
    results = await asyncio.gather(*(link.client.query("echo", {"i": i}) for i in range(50)))
    assert results == [{"i": i} for i in range(50)]
    for i in range(5):
        await link.client.notify("load", {"n": i})
    await asyncio.sleep(0.1)
    assert link.server_handler.notifies == [("load", {"n": i}) for i in range(5)]


async def test_graceful_close_both_sides(link: Link) -> None:
    server_side = await link.server_side()
    await link.client.aclose("bye")
    await link.client.aclose()  # idempotent
    await asyncio.wait_for(server_side.wait_closed(), 2)
    assert link.client_handler.disconnected == [None]
    await asyncio.wait_for(link.server_handler.gone.wait(), 2)
    assert link.server_handler.disconnected == [None]
    with pytest.raises(net.LinkClosed):
        await link.client.query("echo", {})
    assert not link.server.connections


async def test_server_close_says_goodbye(link: Link) -> None:
    await link.server.aclose()
    await asyncio.wait_for(link.client.wait_closed(), 2)
    assert link.client_handler.disconnected == [None]


async def test_keepalive_keeps_idle_link_and_measures_rtt(link: Link) -> None:
    await asyncio.sleep(FAST.idle_timeout * 2)
    assert not link.client.closed
    assert link.client.statistics()["rtt"] is not None


async def test_statistics(link: Link) -> None:
    await collect(await link.client.open_stream(**stream_args()))
    stats = link.client.statistics()
    assert stats["streams_opened"] == 1 and stats["bytes_in"] > 0 and stats["bytes_out"] > 0
    assert stats["peer_role"] == "proxy" and stats["state"] == "open"
    assert link.server.statistics()["connections"] == 1


# --- helpers -----------------------------------------------------------------------------------


def _fast() -> dict[str, Any]:
    return {name: getattr(FAST, name) for name in FAST.__dataclass_fields__}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(node: Node, handler: Recorder, config: net.NetConfig, port: int = 0) -> net.Server:
    return await net.serve(
        "127.0.0.1",
        port,
        ssl_context=node.server_ctx,
        verifier=public_key_verifier,
        role=wire.Role.PROXY,
        info={},
        handler=handler,
        config=config,
    )


async def _dial(node: Node, port: int, handler: Recorder, config: net.NetConfig) -> net.NodeConnection:
    return await net.dial(
        "127.0.0.1",
        port,
        ssl_context=node.client_ctx,
        verifier=public_key_verifier,
        role=wire.Role.WORKER,
        info={},
        handler=handler,
        config=config,
    )


async def test_on_connect_bug_is_not_leaked_to_the_peer(proxy_node: Node, worker_node: Node) -> None:
    class Buggy(Recorder):
        async def on_connect(self, conn: net.NodeConnection) -> None:
            raise AttributeError("'Ledger' object has no attribute 'secret_table'")

    server = await _serve(proxy_node, Buggy(), FAST)
    try:
        with pytest.raises(net.HandshakeRefused) as info:
            await _dial(worker_node, server.port, Recorder(), FAST)
        assert "internal error" in str(info.value) and "secret_table" not in str(info.value)
    finally:
        await server.aclose()
