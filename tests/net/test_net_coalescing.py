"""Frames made in one loop iteration leave in one transport write (that frames made apart in time
each leave at once is tests/e2e/test_streaming_gaps.py)."""

from __future__ import annotations

from typing import Any

from cocoon import net, wire

from .helpers import Link, collect, stream_args


class _CountingTransport:
    """The link's transport, with each write's size recorded (the transport itself has slots)."""

    def __init__(self, transport: Any) -> None:
        self._inner = transport
        self.sizes: list[int] = []

    def write(self, data: bytes) -> None:
        self.sizes.append(len(data))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def count_writes(conn: net.NodeConnection) -> list[int]:
    """Sizes of the transport writes ``conn`` makes from now on."""
    counting = _CountingTransport(conn._transport)
    conn._transport = counting
    return counting.sizes


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
