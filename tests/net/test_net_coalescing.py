"""Frames made in one loop iteration leave in one transport write (that frames made apart in time
each leave at once is tests/e2e/test_streaming_gaps.py)."""

from __future__ import annotations

from cocoon import net, wire

from .helpers import Link, collect, stream_args


def count_writes(conn: net.NodeConnection) -> list[int]:
    """Sizes of the transport writes ``conn`` makes from now on."""
    transport = conn._transport
    sizes: list[int] = []
    write = transport.write

    def counting(data: bytes) -> None:
        sizes.append(len(data))
        write(data)

    transport.write = counting  # type: ignore[method-assign]
    return sizes


async def test_a_whole_answer_made_at_once_is_one_write(link: Link) -> None:
    server_side = await link.server_side()
    writes = count_writes(server_side)
    events = await collect(await link.client.open_stream(**stream_args(body=b"a\nb\nc\nd")))
    assert [type(e) for e in events] == [
        wire.ResponseHead,
        *[wire.ResponseChunk] * 4,
        wire.ResponseEnd,
    ]
    assert len(writes) == 1  # head, four chunks and the end: one TLS write
