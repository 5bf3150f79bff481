"""Keep-alive, reconnects, backpressure, peer misbehaviour, accept overload, memory_pair."""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import Any

import pytest

from cocoon import net, wire
from cocoon.net.connection import establish
from cocoon.net.transport import memory_transport_pair

from .helpers import FAST, USAGE, Node, Recorder, collect, public_key_verifier, stream_args


def _cfg(**changes: Any) -> net.NetConfig:
    fields = {name: getattr(FAST, name) for name in FAST.__dataclass_fields__}
    return net.NetConfig(**{**fields, **changes})


async def _pair(
    server: Recorder | None = None, client: Recorder | None = None, config: net.NetConfig = FAST
) -> tuple[net.NodeConnection, net.NodeConnection, Recorder, Recorder]:
    sh, ch = server or Recorder(), client or Recorder()
    dialer, acceptor = await net.memory_pair(
        dialer_role=wire.Role.CLIENT,
        dialer_info={"owner": "EQ..."},
        dialer_handler=ch,
        acceptor_role=wire.Role.PROXY,
        acceptor_info={"name": "p"},
        acceptor_handler=sh,
        dialer_attestation="client-evidence",
        acceptor_attestation="proxy-evidence",
        config=config,
    )
    return dialer, acceptor, sh, ch


async def test_memory_pair_is_a_full_link() -> None:
    dialer, acceptor, sh, _ = await _pair()
    try:
        assert dialer.peer.attestation == "proxy-evidence" and acceptor.peer.attestation == "client-evidence"
        assert dialer.peer.role is wire.Role.PROXY and acceptor.peer.info == {"owner": "EQ..."}
        events = await collect(await dialer.open_stream(**stream_args(body=b"1\n2")))
        assert events[-1] == wire.ResponseEnd(stream_id=1, usage=USAGE, meta={"worker": "w1"})
        assert await acceptor.query("echo", {"x": 1}) == {"x": 1}  # queries work both ways
        sh.stream_started.clear()
        out = await acceptor.open_stream(**stream_args(body=b"z"))  # so do streams (even ids)
        assert out.stream_id == 2
    finally:
        await dialer.aclose()
        await acceptor.wait_closed()


async def test_keepalive_timeout_closes_silent_link() -> None:
    """The peer finishes the handshake, then never sends another byte (not even Pong)."""
    ours, theirs = memory_transport_pair()
    handler = Recorder()
    silent = wire.Connection(our_role=wire.Role.PROXY, dialer=False)

    async def silent_peer() -> None:
        while silent.next_event() is wire.NEED_DATA:
            silent.receive_data(await theirs.receive())
        theirs.write(silent.send(wire.Hello(role=wire.Role.PROXY, min_version=1, max_version=1, info={})))
        theirs.write(silent.send(wire.HelloAck(version=1, info={})))
        while await theirs.receive():  # swallow pings, answer nothing
            pass

    async with asyncio.TaskGroup() as tg:
        peer_task = tg.create_task(silent_peer())
        conn = await establish(
            ours, dialer=True, role=wire.Role.WORKER, info={}, handler=handler, verifier=None, config=FAST
        )
        conn._start()
        conn._ready.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(conn.wait_closed(), FAST.idle_timeout * 4)
        elapsed = loop.time() - started
        peer_task.cancel()
    assert FAST.idle_timeout * 0.8 <= elapsed <= FAST.idle_timeout * 2.5
    assert isinstance(conn.error, net.ConnectionLost) and "idle timeout" in str(conn.error)
    await asyncio.wait_for(handler.gone.wait(), 1)
    assert isinstance(handler.disconnected[0], net.ConnectionLost)
    assert silent.bytes_received > 0  # it did get our pings


async def test_peer_garbage_is_connection_lost() -> None:
    dialer, acceptor, _, _ch = await _pair()
    acceptor._transport.write(b"\x00\x00\x00\x03\x93\xff\xff")  # a frame that is not a message
    await asyncio.wait_for(dialer.wait_closed(), 2)
    assert isinstance(dialer.error, net.ConnectionLost) and "protocol error" in str(dialer.error)
    await asyncio.wait_for(acceptor.wait_closed(), 2)


async def test_slow_reader_backpressure_then_stall_cancel() -> None:
    cfg = _cfg(stream_buffer=1024, stall_timeout=0.3)
    dialer, _acceptor, sh, _ = await _pair(config=cfg)
    try:
        stuck = await dialer.open_stream(**stream_args("/forever"))
        assert isinstance(await anext(stuck), wire.ResponseHead)
        # Nobody reads `stuck`: the producer is held back, memory stays bounded.
        await asyncio.sleep(0.25)
        assert stuck._queued <= cfg.stream_buffer + 128
        # After stall_timeout the stream is cancelled (handler cancelled), the link lives on.
        await asyncio.wait_for(sh.stream_cancelled.wait(), 2)
        with pytest.raises(net.StreamCancelled):
            async for _ in stuck:
                pass
        assert await dialer.query("echo", {"still": "up"}) == {"still": "up"}
        events = await collect(await dialer.open_stream(**stream_args(body=b"ok")))
        assert isinstance(events[-1], wire.ResponseEnd)
    finally:
        await dialer.aclose()


async def test_open_stream_waits_for_a_free_slot() -> None:
    dialer, _acceptor, _, _ = await _pair(config=_cfg(max_streams=2))
    try:
        first = await dialer.open_stream(**stream_args("/forever"))
        await dialer.open_stream(**stream_args("/forever"))
        third = asyncio.create_task(dialer.open_stream(**stream_args()))
        await asyncio.sleep(0.05)
        assert not third.done()
        await first.cancel()
        out = await asyncio.wait_for(third, 1)
        assert isinstance((await collect(out))[-1], wire.ResponseEnd)
    finally:
        await dialer.aclose()


async def test_handler_that_forgets_to_end_gets_internal_error() -> None:
    class Lazy(Recorder):
        async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
            await stream.send_head(200)

    dialer, _, _, _ = await _pair(server=Lazy())
    try:
        events = await collect(await dialer.open_stream(**stream_args()))
        assert isinstance(events[-1], wire.StreamError) and events[-1].code is wire.ErrorCode.INTERNAL
    finally:
        await dialer.aclose()


async def test_responder_cancel_arrives_as_cancelled_error() -> None:
    class Quitter(Recorder):
        async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
            await stream.send_head(200)
            await stream.cancel("draining")
            with pytest.raises(wire.LocalProtocolError):
                await stream.send_chunk(b"x")  # a handler bug is refused, not sent

    dialer, _, _, _ = await _pair(server=Quitter())
    try:
        events = await collect(await dialer.open_stream(**stream_args()))
        assert isinstance(events[-1], wire.StreamError) and events[-1].code is wire.ErrorCode.CANCELLED
        assert "draining" in events[-1].message
    finally:
        await dialer.aclose()


async def test_dialer_reconnects_after_server_restart(proxy_node: Node, worker_node: Node) -> None:
    handler = Recorder()
    server = await _serve(proxy_node, handler, 0)
    port = server.port
    dialer = net.Dialer(
        "127.0.0.1",
        port,
        ssl_context=worker_node.client_ctx,
        verifier=public_key_verifier,
        role=wire.Role.WORKER,
        info={},
        handler=Recorder(),
        config=FAST,
        rng=random.Random(1),
    )
    await dialer.start()
    try:
        first = await asyncio.wait_for(dialer.wait_connected(), 2)
        assert await first.query("echo", {"n": 1}) == {"n": 1}
        await server.aclose()
        await asyncio.wait_for(first.wait_closed(), 2)
        await asyncio.sleep(FAST.backoff_max)  # a few failed attempts against the closed port
        server = await _serve(proxy_node, handler, port)
        second = await asyncio.wait_for(dialer.wait_connected(), 3)
        assert second is not first
        assert await second.query("echo", {"n": 2}) == {"n": 2}
        stats = dialer.statistics()
        assert stats["connects"] == 2 and stats["attempts"] >= 3
    finally:
        await dialer.aclose()
        await server.aclose()
    with pytest.raises(net.LinkClosed):
        await dialer.wait_connected()


def test_backoff_doubles_with_jitter_and_cap() -> None:
    cfg = _cfg(backoff_initial=1.0, backoff_max=8.0)
    dialer = net.Dialer(
        "h",
        1,
        ssl_context=None,
        verifier=None,
        role=wire.Role.CLIENT,
        info={},
        handler=Recorder(),
        config=cfg,
        rng=random.Random(7),
    )  # type: ignore[arg-type]
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [dialer.backoff(failures) for _ in range(50)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert len(set(delays)) > 1


async def test_accept_overload_is_retried(
    proxy_node: Node, worker_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.sock_accept
    failures = [OSError(errno.EMFILE, "Too many open files"), OSError(errno.ENOBUFS, "No buffer space")]

    async def flaky(sock: socket.socket) -> tuple[socket.socket, Any]:
        if failures:
            raise failures.pop(0)
        return await real(sock)

    monkeypatch.setattr(loop, "sock_accept", flaky)
    server = await _serve(proxy_node, Recorder(), 0)
    try:
        conn = await net.dial(
            "127.0.0.1",
            server.port,
            ssl_context=worker_node.client_ctx,
            verifier=public_key_verifier,
            role=wire.Role.WORKER,
            info={},
            handler=Recorder(),
            config=FAST,
        )
        assert await conn.query("echo", {}) == {}
        assert not failures
        await conn.aclose()
    finally:
        await server.aclose()


async def test_handshake_timeout_against_mute_server(worker_node: Node, proxy_node: Node) -> None:
    """A peer that completes TLS but never says Hello is dropped after handshake_timeout."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    raw = await asyncio.start_server(mute, "127.0.0.1", 0, ssl=proxy_node.server_ctx)
    port = raw.sockets[0].getsockname()[1]
    try:
        with pytest.raises(net.NetTimeout):
            await net.dial(
                "127.0.0.1",
                port,
                ssl_context=worker_node.client_ctx,
                verifier=None,
                role=wire.Role.WORKER,
                info={},
                handler=Recorder(),
                config=_cfg(handshake_timeout=0.3),
            )
    finally:
        raw.close()


async def _serve(node: Node, handler: Recorder, port: int) -> net.Server:
    return await net.serve(
        "127.0.0.1",
        port,
        ssl_context=node.server_ctx,
        verifier=public_key_verifier,
        role=wire.Role.PROXY,
        info={},
        handler=handler,
        config=FAST,
    )


async def test_accept_loop_failure_surfaces_on_close(
    proxy_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()

    async def broken(sock: socket.socket) -> tuple[socket.socket, Any]:
        raise OSError(errno.EINVAL, "listener broken")

    monkeypatch.setattr(loop, "sock_accept", broken)
    server = await _serve(proxy_node, Recorder(), 0)
    await asyncio.sleep(0.05)
    with pytest.raises(BaseExceptionGroup) as info:
        await server.aclose()
    assert info.group_contains(OSError)  # type: ignore[attr-defined]
