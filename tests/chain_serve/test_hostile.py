# mypy: disable-error-code="no-untyped-call"
# (pytoniq ships no annotations)
"""Malformed queries get a liteServer.error naming the problem and change nothing; a peer that
breaks the protocol is dropped; none of it costs other connections anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from pytoniq.liteclient.client import LiteClient, LiteServerError

from cocoon.chain import LocalChain
from cocoon.chain.liteserver.tl import schemas

from .conftest import Served


@pytest.fixture
async def client(served: Served) -> AsyncIterator[LiteClient]:
    c = LiteClient("127.0.0.1", served.servers[0].port, served.public_key, trust_level=2)
    await c.connect()
    try:
        yield c
    finally:
        await c.close()


def _account(wc: int, hex_id: str) -> dict[str, object]:
    return {"workchain": wc, "id": hex_id}


async def test_malformed_queries_are_errors_and_change_nothing(
    served: Served, client: LiteClient, local_view: Callable[[], LocalChain]
) -> None:
    block = client.last_mc_block.to_dict()
    wallet = served.wallet.address.hash_part.hex()
    cases = [
        ("getAccountState", {"id": block, "account": _account(5, wallet)}, "workchain 0 or -1"),
        (
            "getTransactions",
            {"count": 17, "account": _account(0, wallet), "lt": 1, "hash": "00" * 32},
            "count",
        ),
        (
            "getTransactions",
            {"count": 1, "account": _account(0, wallet), "lt": 10**12, "hash": "ab" * 32},
            "lt and hash",
        ),
        ("sendMessage", {"body": b"not a bag of cells"}, "bag of cells"),
        (
            "runSmcMethod",
            {"mode": 4, "id": block, "account": _account(0, wallet), "method_id": 1, "params": b"\x00"},
            "VmStack",
        ),
        ("lookupBlock", {"mode": 1, "id": {"workchain": -1, "shard": -(2**63), "seqno": 1}}, "not served"),
    ]
    before = local_view()
    count = before.transaction_count()
    before.close()
    for name, data, message in cases:
        with pytest.raises(LiteServerError, match=message):
            await client.liteserver_request(name, data)
    after = local_view()
    try:
        assert after.transaction_count() == count
    finally:
        after.close()
    assert (await client.get_time())["now"] > 0  # the connection still serves


async def test_protocol_violations_drop_only_that_connection(served: Served, client: LiteClient) -> None:
    port = served.servers[0].port
    for payload in (schemas().serialize("tcp.pong", {"random_id": 1}), b"\x01\x02\x03\x04garbage"):
        rogue = LiteClient("127.0.0.1", port, served.public_key, trust_level=2)
        rogue.reader, rogue.writer = await asyncio.open_connection("127.0.0.1", port)
        rogue.writer.write(rogue.handshake())
        assert len(await rogue.reader.readexactly(68)) == 68  # the empty packet that completes it
        rogue.writer.write(rogue.encrypt(rogue.serialize_packet(payload)))
        assert await asyncio.wait_for(rogue.reader.read(), 5) == b""  # dropped
        rogue.writer.close()
    assert (await client.get_time())["now"] > 0


async def test_a_failure_inside_the_server_is_still_an_answer(
    client: LiteClient, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cocoon.chain.liteserver.backend import ChainBackend

    async def broken(self: ChainBackend, address: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ChainBackend, "account", broken)
    block = client.last_mc_block.to_dict()
    account = _account(0, served.wallet.address.hash_part.hex())
    with pytest.raises(LiteServerError, match="internal error answering getAccountState"):
        await asyncio.wait_for(
            client.liteserver_request("getAccountState", {"id": block, "account": account}), 5
        )
