"""What an idle attested link holds: no private 256 KiB TLS read buffer, no cached TLS sessions."""

from __future__ import annotations

import asyncio

from cocoon import net, wire
from cocoon.net.tls import TlsLink

from .helpers import Link, Node, collect, open_link, stream_args


def _tls(conn: net.NodeConnection) -> TlsLink:
    transport = conn._transport
    assert isinstance(transport, TlsLink)
    return transport


async def test_links_share_one_tls_read_buffer_and_big_answers_still_arrive_whole(
    proxy_node: Node, worker_node: Node
) -> None:
    links = [await open_link(proxy_node, worker_node) for _ in range(2)]
    try:
        ends = [lk.client for lk in links] + [await lk.server_side() for lk in links]
        buffers = {id(_tls(conn).get_buffer(-1).obj) for conn in ends}
        assert len(buffers) == 1  # four ends, one buffer
        # Two links reading big answers at once through the shared buffer: nothing mixes.
        streams = [await lk.client.open_stream(**stream_args("/big", body=b"900")) for lk in links]
        answers = await asyncio.gather(*(collect(stream) for stream in streams))
        for events in answers:
            data = b"".join(e.data for e in events if isinstance(e, wire.ResponseChunk))
            assert data == bytes(range(256)) * 900
    finally:
        for lk in links:
            await lk.client.aclose()
            await lk.server.aclose()


async def test_the_server_keeps_no_tls_sessions(link: Link, proxy_node: Node) -> None:
    assert await link.client.query("echo", {"a": 1}) == {"a": 1}
    assert proxy_node.server_ctx.num_tickets == 0
    assert proxy_node.server_ctx.session_stats()["number"] == 0
