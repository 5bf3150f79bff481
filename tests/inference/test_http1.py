"""The lean upstream pool against scripted raw HTTP servers: keep-alive, one piece per read,
bodies framed every way HTTP/1.1 allows, broken upstreams, a full pool, and HTTPS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cocoon.inference import EngineBusy, EngineProtocolError, EngineTimeout, EngineUnavailable
from cocoon.inference.http1 import Timeouts, UpstreamPool, _Connection

FAST = Timeouts(connect=2, read=2, write=2, pool=0.2)
Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def raw_server(
    reply: Reply, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each request (recorded) and lets ``reply`` answer it, per connection."""
    requests: list[bytes] = []
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while not reader.at_eof():
                request = await _read_request(reader)
                requests.append(b"%d " % connections + request)
                await reply(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", requests
    finally:
        server.close()
    assert connections >= 1


def chunked(*parts: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def pool(url: str, **kw: object) -> UpstreamPool:
    return UpstreamPool(url, timeouts=FAST, max_connections=2, headers={"authorization": "Bearer k"}, **kw)  # type: ignore[arg-type]


async def test_fifty_events_written_at_once_come_out_as_one_piece_on_one_kept_alive_socket() -> None:
    events = [b"data: %d\n\n" % i for i in range(50)]

    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(chunked(*events))
        await w.drain()

    async with raw_server(reply) as (url, requests):
        upstream = pool(url)
        for _ in range(2):
            response = await upstream.request("POST", "/v1/chat/completions", b'{"a":1}')
            assert response.status == 200 and response.header("content-type") == "text/event-stream"
            pieces = [piece async for piece in response.chunks()]
            assert pieces == [b"".join(events)]  # everything one read delivered, in one piece
        await upstream.aclose()
    assert [r[:2] for r in requests] == [b"1 ", b"1 "]  # both on the first connection
    head = requests[0].decode()
    assert head.startswith("1 POST /v1/chat/completions HTTP/1.1\r\n")
    assert "authorization: Bearer k\r\n" in head and "content-length: 7\r\n" in head
    assert requests[0].endswith(b'{"a":1}')


async def test_a_piece_written_alone_is_handed_on_without_waiting_for_the_next() -> None:
    go_on = asyncio.Event()

    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await go_on.wait()
        w.write(b"4\r\nlast\r\n0\r\n\r\n")

    async with raw_server(reply) as (url, _):
        upstream = pool(url)
        response = await upstream.request("GET", "/x")
        pieces = response.chunks()
        assert await anext(pieces) == b"first"  # while the server still holds the rest
        go_on.set()
        assert [p async for p in pieces] == [b"last"]
        await upstream.aclose()


async def test_content_length_and_close_delimited_bodies() -> None:
    async def sized(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!")

    async def until_close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"ok": true}')
        w.close()

    async with raw_server(sized) as (url, requests):
        upstream = pool(url)
        for _ in range(2):
            response = await upstream.request("GET", "/v1/models")
            assert response.status == 404 and await response.read(1 << 20) == b"nope!"
        await upstream.aclose()
    assert [r[:2] for r in requests] == [b"1 ", b"1 "]  # a sized body keeps the socket
    async with raw_server(until_close) as (url, requests):
        upstream = pool(url)
        for _ in range(2):  # the closed socket is not reused
            response = await upstream.request("GET", "/v1/models")
            assert await response.read(1 << 20) == b'{"ok": true}'
        await upstream.aclose()
    assert [r[:2] for r in requests] == [b"1 ", b"2 "]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"SMTP ready\r\n\r\n", EngineProtocolError, "not HTTP"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", EngineProtocolError, "mid-body"),
        (b"", EngineProtocolError, "without answering"),
    ],
    ids=["not-http", "cut-mid-body", "closed-at-once"],
)
async def test_broken_upstreams_are_engine_errors(answer: bytes, error: type[Exception], match: str) -> None:
    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer)
        w.close()

    async with raw_server(reply) as (url, _):
        upstream = pool(url)
        with pytest.raises(error, match=match):
            response = await upstream.request("GET", "/x")
            await response.read(1 << 20)
        await upstream.aclose()


async def test_silence_times_out_and_a_full_pool_is_busy() -> None:
    async def silent(r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await r.read()  # never answers

    async with raw_server(silent) as (url, _):
        upstream = UpstreamPool(
            url, timeouts=Timeouts(connect=2, read=0.2, write=2, pool=0.1), max_connections=1, headers={}
        )
        with pytest.raises(EngineTimeout) as info:
            await upstream.request("GET", "/x")
        assert isinstance(info.value.__cause__, TimeoutError)
        hold = asyncio.ensure_future(upstream.request("GET", "/y"))
        await asyncio.sleep(0)  # let it take the one slot
        with pytest.raises(EngineBusy):
            await upstream.request("GET", "/z")
        with pytest.raises(EngineTimeout):
            await hold
        await upstream.aclose()
    with pytest.raises(EngineUnavailable, match="closed"):
        await upstream.request("GET", "/x")


async def test_the_read_timeout_is_the_longest_silence_not_the_whole_body() -> None:
    """A body that keeps coming for longer than the read timeout is fine: the timeout is a silence."""

    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(12):  # 12 gaps of 0.05 s: 0.6 s in all, over the 0.4 s read timeout
            await asyncio.sleep(0.05)
            w.write(b"1\r\n%d\r\n" % (i % 10))
            await w.drain()
        w.write(b"0\r\n\r\n")

    async with raw_server(reply) as (url, _):
        upstream = UpstreamPool(
            url, timeouts=Timeouts(connect=2, read=0.4, write=2, pool=0.1), max_connections=1, headers={}
        )
        for _ in range(2):  # the second on the kept-alive socket, its timer still set
            response = await upstream.request("GET", "/x")
            assert b"".join([p async for p in response.chunks()]) == b"012345678901"
        await upstream.aclose()


async def test_one_timer_watches_the_silence_of_every_wait() -> None:
    """The timer a first wait set fires while a later wait is pending: it moves on to that wait's
    deadline, which still expires on time (not at the first deadline, and not never)."""
    conn = _Connection()
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(conn.wait(0.3))  # arms the one timer at +0.3
    await asyncio.sleep(0.2)
    conn.resume_writing()  # something changed: the first wait ends
    await first
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):  # a timer that did not move on would never expire it
            await conn.wait(0.3)  # pending when the first timer fires (+0.1), due at +0.3
    assert 0.25 <= loop.time() - started < 1.5


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, client


async def test_https_upstream_is_verified(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)

    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(chunked(b"secret"))

    async with raw_server(reply, tls=server_ctx) as (url, _):
        trusted = pool(url, ssl_context=client_ctx)
        response = await trusted.request("GET", "/v1/models")
        assert await response.read(100) == b"secret"
        await trusted.aclose()
        default = pool(url)  # the certifi roots do not know this certificate
        with pytest.raises(EngineUnavailable, match="unreachable"):
            await default.request("GET", "/v1/models")
        await default.aclose()
