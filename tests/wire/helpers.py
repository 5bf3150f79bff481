"""A dialer and an acceptor joined in memory (h11's ConnectionPair)."""

from __future__ import annotations

from typing import Any

from cocoon.wire import (
    NEED_DATA,
    Connection,
    Hello,
    HelloAck,
    Message,
    Request,
    Role,
    Usage,
)

USAGE = Usage(prompt_tokens=3, cached_tokens=1, completion_tokens=5, reasoning_tokens=0)


def hello(role: Role, lo: int = 1, hi: int = 1, **info: Any) -> Hello:
    return Hello(role=role, min_version=lo, max_version=hi, info=info)


def request(stream_id: int, **overrides: Any) -> Request:
    fields: dict[str, Any] = {
        "stream_id": stream_id,
        "endpoint": "/v1/chat/completions",
        "model": "smol",
        "body": b'{"messages": []}',
        "max_coefficient": 4000,
        "max_tokens": 64,
        "timeout": 30.0,
        "request_id": bytes(32),
        "meta": {},
    }
    fields.update(overrides)
    return Request(**fields)


class ConnectionPair:
    def __init__(self, **kwargs: Any) -> None:
        self.dialer = Connection(our_role=Role.CLIENT, dialer=True, **kwargs)
        self.acceptor = Connection(our_role=Role.PROXY, dialer=False, **kwargs)

    def other(self, conn: Connection) -> Connection:
        return self.acceptor if conn is self.dialer else self.dialer

    def send(self, conn: Connection, msg: Message) -> list[Any]:
        """``conn`` sends ``msg``; returns every event the other side can read now."""
        peer = self.other(conn)
        peer.receive_data(conn.send(msg))
        events = []
        while (event := peer.next_event()) is not NEED_DATA:
            events.append(event)
        return events

    def handshake(self) -> None:
        assert self.send(self.dialer, hello(Role.CLIENT)) == [hello(Role.CLIENT)]
        assert self.send(self.acceptor, hello(Role.PROXY)) == [hello(Role.PROXY)]
        assert self.send(self.acceptor, HelloAck(version=1, info={})) == [HelloAck(version=1, info={})]
