"""Throughput and footprint of one loopback RA-TLS link (report only; not a test).

    .venv/bin/python tests/net/bench_net.py

Prints: small-message rate (64-byte ResponseChunks on one stream), query round trips per second
(64 in flight), bulk MB/s (256 KiB chunks), and memory per open connection (both ends in this
process: Python heap via tracemalloc, and process RSS).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import resource
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon import net, wire
from cocoon.tee.tls import create_ssl_context, make_plain_certificate, pem_pair

USAGE = wire.Usage(prompt_tokens=0, cached_tokens=0, completion_tokens=0, reasoning_tokens=0)


class Source(net.NullHandler):
    """Streams ``count`` chunks of ``size`` bytes, as the request body says."""

    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        count, size = (int(x) for x in stream.request.body.split(b","))
        chunk = b"x" * size
        await stream.send_head(200)
        for _ in range(count):
            await stream.send_chunk(chunk)
        await stream.send_end(USAGE)

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return params


def contexts() -> tuple[Any, Any]:
    out = []
    for server in (True, False):
        key = ed25519.Ed25519PrivateKey.generate()
        cert = make_plain_certificate(key, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        cert_pem, key_pem = pem_pair(key, cert)
        out.append(create_ssl_context(server=server, cert_pem=cert_pem, key_pem=key_pem))
    return out[0], out[1]


async def stream_rate(conn: net.NodeConnection, count: int, size: int) -> tuple[float, float]:
    started = time.perf_counter()
    out = await conn.open_stream(
        endpoint="/bench",
        model="m",
        body=f"{count},{size}".encode(),
        max_coefficient=0,
        max_tokens=0,
        timeout=600,
        request_id=b"b" * 32,
    )
    received = 0
    async for event in out:
        if isinstance(event, wire.ResponseChunk):
            received += len(event.data)
    elapsed = time.perf_counter() - started
    return count / elapsed, received / elapsed / 1e6


async def main() -> None:
    server_ctx, client_ctx = contexts()
    server = await net.serve(
        "127.0.0.1",
        0,
        ssl_context=server_ctx,
        verifier=lambda der: None,
        role=wire.Role.PROXY,
        info={},
        handler=Source(),
    )

    async def dial() -> net.NodeConnection:
        return await net.dial(
            "127.0.0.1",
            server.port,
            ssl_context=client_ctx,
            verifier=lambda der: None,
            role=wire.Role.CLIENT,
            info={},
            handler=net.NullHandler(),
        )

    conn = await dial()
    await stream_rate(conn, 2000, 64)  # warm-up
    msgs, _ = await stream_rate(conn, 50_000, 64)
    print(f"small chunks (64 B):  {msgs:,.0f} messages/s")
    _, mbps = await stream_rate(conn, 2000, 256 * 1024)
    print(f"bulk (256 KiB chunks): {mbps:,.0f} MB/s")

    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await conn.query("echo", {"i": i})

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(20_000)))
    print(f"queries (64 in flight): {20_000 / (time.perf_counter() - started):,.0f} round trips/s")
    await conn.aclose()

    n = 200
    gc.collect()
    tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conns = [await dial() for _ in range(n)]
    await asyncio.sleep(0.2)
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.stop()
    print(
        f"memory per open connection (both ends): {(heap1 - heap0) / n / 1024:,.1f} KiB Python heap, "
        f"{(rss1 - rss0) / n:,.1f} KiB RSS (max-RSS delta / {n})"
    )
    await asyncio.gather(*(c.aclose() for c in conns))
    await server.aclose()


if __name__ == "__main__":
    asyncio.run(main())
