# mypy: disable-error-code="no-untyped-call"
# (pytoniq ships no annotations)
"""LitePeers' failover rules with stand-in clients: a server's error answer is final, a connection
failure moves the same call to the next server, a down server is dialled again on later calls."""

from __future__ import annotations

from typing import Any

import pytest
from pytoniq.liteclient.client import LiteServerError

from cocoon.chain.litepeers import LitePeers


class FakeServer:
    def __init__(self, host: str) -> None:
        self.host, self.port = host, 1


class FakeClient:
    def __init__(self, name: str, *, up: bool = True, error: Exception | None = None) -> None:
        self.server = FakeServer(name)
        self.up, self.error = up, error
        self.inited = False
        self.listener = None
        self.trust_level = 2
        self.delta = 0.02
        self.calls = 0

    async def connect(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("down")
        self.inited = True

    async def close(self) -> None:
        self.inited = False

    async def get_version(self) -> dict[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"server": self.server.host}


async def test_an_error_answer_is_final_a_dead_server_is_skipped() -> None:
    refusing = FakeClient("a", error=LiteServerError(0, "cannot apply external message"))
    spare = FakeClient("b")
    peers = LitePeers([refusing, spare])
    await peers.start_up()
    with pytest.raises(LiteServerError):
        await peers.get_version()
    assert spare.calls == 0  # an answer is not a failure: no second server asked
    refusing.error = ConnectionResetError("gone")
    assert await peers.get_version() == {"server": "b"}  # the same call, on the next server
    assert await peers.get_version() == {"server": "b"} and refusing.calls == 2  # it stays there
    assert all(c.delta == 0.001 for c in (refusing, spare))


async def test_none_up_is_a_connection_error_and_a_return_is_noticed() -> None:
    only = FakeClient("a", up=False)
    peers = LitePeers([only])
    with pytest.raises(ConnectionError, match="none of the 1"):
        await peers.start_up()
    with pytest.raises(ConnectionError, match="no liteserver answered"):
        await peers.get_version()
    only.up = True
    assert await peers.get_version() == {"server": "a"}
