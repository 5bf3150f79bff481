# mypy: disable-error-code="no-untyped-call"
# (pytoniq ships no annotations)
"""The server side of ADNL/TCP against pytoniq's own client: handshake, framing, ping, refusals."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from pytoniq.liteclient.client import LiteClient, LiteServerError

from cocoon.chain.liteserver import AdnlError, ServerKey
from cocoon.chain.liteserver.adnl import MAX_PACKET, AdnlSession

from .conftest import Served


def _client(key: ServerKey, port: int = 1) -> LiteClient:
    return LiteClient("127.0.0.1", port, base64.b64encode(key.public).decode(), trust_level=2)


def test_session_speaks_pytoniqs_framing_both_ways() -> None:
    key = ServerKey(os.urandom(32))
    client = _client(key)
    session = AdnlSession(key, client.handshake())  # pytoniq builds the 256 bytes and its ciphers
    packets = [client.serialize_packet(b"first"), client.serialize_packet(b"x" * 70_000)]
    wire = b"".join(client.encrypt(p) for p in packets)
    assert session.feed(wire[:50]) == []  # partial packets wait for the rest
    assert session.feed(wire[50:200]) == [b"first"]
    assert session.feed(wire[200:]) == [b"x" * 70_000]
    reply = client.decrypt(session.seal(b"answer"))
    size = int.from_bytes(reply[:4], "little")
    assert size == len(reply) - 4 and reply[36:-32] == b"answer"


def test_handshake_for_another_key_or_garbled_is_refused() -> None:
    key, other = ServerKey(os.urandom(32)), ServerKey(os.urandom(32))
    with pytest.raises(AdnlError, match="another server key"):
        AdnlSession(key, _client(other).handshake())
    hello = bytearray(_client(key).handshake())
    hello[200] ^= 1
    with pytest.raises(AdnlError, match="does not decrypt"):
        AdnlSession(key, bytes(hello))
    with pytest.raises(AdnlError, match="256 bytes"):
        AdnlSession(key, bytes(hello[:255]))


def test_bad_packets_are_refused() -> None:
    key = ServerKey(os.urandom(32))
    client = _client(key)
    session = AdnlSession(key, client.handshake())
    packet = bytearray(client.serialize_packet(b"payload"))
    packet[-1] ^= 1
    with pytest.raises(AdnlError, match="checksum"):
        session.feed(client.encrypt(bytes(packet)))
    session = AdnlSession(key, (client := _client(key)).handshake())
    with pytest.raises(AdnlError, match="packet of"):
        session.feed(client.encrypt((MAX_PACKET + 1).to_bytes(4, "little")))


async def test_pytoniq_client_connects_pings_and_queries(served: Served) -> None:
    server = served.servers[0]
    client = _client(served.key, server.port)
    await client.connect()
    try:
        ping, qid = client.get_ping_query()
        pong = await client.send(ping, qid)
        await asyncio.wait_for(pong, 5)
        assert (await client.get_time())["now"] > 0
        version = await client.get_version()
        assert version["capabilities"] & (1 << 40)  # says it is a development chain
        with pytest.raises(LiteServerError, match="not served"):
            await client.liteserver_request("getBlock", {"id": client.last_mc_block.to_dict()})
        # a query the server does not know does not cost the connection
        assert (await client.get_masterchain_info())["last"]["seqno"] == client.last_mc_block.seqno
    finally:
        await client.close()


async def test_a_client_with_the_wrong_key_is_dropped_and_others_unaffected(served: Served) -> None:
    port = served.servers[0].port
    stranger = _client(ServerKey(os.urandom(32)), port)
    stranger.timeout = 3
    with pytest.raises(Exception):  # noqa: B017 - pytoniq surfaces the dropped socket in several ways
        await stranger.connect()
    await stranger.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(os.urandom(256))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a word
    writer.close()
    good = _client(served.key, port)
    await good.connect()
    try:
        assert (await good.get_time())["now"] > 0
    finally:
        await good.close()
