"""CPU per frame and RSS per idle link of loopback RA-TLS links, on uvloop and asyncio (report only).

    .venv/bin/python tests/net/bench_frames.py [uvloop|asyncio] [frames] [links]

Both ends live in this process, so "per frame" is the CPU of one sender plus one receiver; "per
link" is the RSS growth of ``links`` idle links (both ends) after a settle, divided by ``links``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Mapping
from typing import Any

from cocoon import net, wire

try:
    from tests.net.bench_net import contexts
except ImportError:  # run as a script from the repository root
    sys.path.insert(0, ".")
    from tests.net.bench_net import contexts

USAGE = wire.Usage(prompt_tokens=0, cached_tokens=0, completion_tokens=0, reasoning_tokens=0)


class Source(net.NullHandler):
    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        count, size, paced = (int(x) for x in stream.request.body.split(b","))
        chunk = b"x" * size
        await stream.send_head(200)
        for _ in range(count):
            await stream.send_chunk(chunk)
            if paced:  # one frame per loop turn: each leaves in its own TLS record, as events do
                await asyncio.sleep(0)
        await stream.send_end(USAGE)

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return params


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


async def one_stream(conn: net.NodeConnection, count: int, size: int, paced: int = 0) -> None:
    out = await conn.open_stream(
        endpoint="/bench",
        model="m",
        body=f"{count},{size},{paced}".encode(),
        max_coefficient=0,
        max_tokens=0,
        timeout=600,
        request_id=b"b" * 32,
    )
    async for _ in out:
        pass


async def main(frames: int, links: int) -> None:
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
    await one_stream(conn, 2000, 64)
    best = []
    for _ in range(3):
        c0 = time.process_time()
        await one_stream(conn, frames, 64)
        best.append((time.process_time() - c0) / frames * 1e6)
    print(f"stream frames (64 B): {min(best):.2f} us CPU/frame (both ends)")
    best = []
    for _ in range(3):
        c0 = time.process_time()
        for _ in range(200):
            await one_stream(conn, 5, 64)
        best.append((time.process_time() - c0) / 200 * 1e6)
    print(f"short streams (5 chunks): {min(best):.1f} us CPU/stream (both ends)")
    best = []
    for _ in range(3):
        c0 = time.process_time()
        for _ in range(200):
            await one_stream(conn, 5, 64, paced=1)
        best.append((time.process_time() - c0) / 200 * 1e6)
    print(f"paced streams (5 chunks, one per loop turn): {min(best):.1f} us CPU/stream (both ends)")
    best = []
    for _ in range(3):
        c0 = time.process_time()
        for i in range(2000):
            await conn.query("echo", {"i": i})
        best.append((time.process_time() - c0) / 2000 * 1e6)
    print(f"queries (sequential): {min(best):.1f} us CPU/round trip (both ends)")
    await conn.aclose()

    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.05)
    rss0 = rss_kib()
    conns = [await dial() for _ in range(links)]
    for c in conns:
        await c.query("echo", {})
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.05)
    rss1 = rss_kib()
    print(f"idle links: {(rss1 - rss0) / links:.1f} KiB RSS per link (both ends, {links} links)")
    await asyncio.gather(*(c.aclose() for c in conns))
    await server.aclose()


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "uvloop"
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    links = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    factory = None
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(frames, links))
