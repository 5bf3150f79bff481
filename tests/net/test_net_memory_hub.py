"""A MemoryHub gives services host:port names without sockets: the same handshake, verifier and
link code as TCP, so a refusal on either side leaves nothing behind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cocoon import net, wire
from tests.net.helpers import FAST


class _Echo(net.NullHandler):
    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return {"echo": method, "peer": str(conn.peer.attestation)}


def _refuse(_der: bytes) -> object:
    raise ValueError("not this certificate")


async def _listen(hub: net.MemoryHub, verifier: net.Verifier | None = None) -> net.MemoryListener:
    return await hub.serve(
        "proxy.test",
        0,
        certificate=b"proxy-cert",
        verifier=verifier or (lambda der: der.decode()),
        role=wire.Role.PROXY,
        info={"who": "proxy"},
        handler=_Echo(),
        config=FAST,
    )


async def _connect(hub: net.MemoryHub, port: int, verifier: net.Verifier | None = None) -> net.NodeConnection:
    return await hub.connect(
        "proxy.test",
        port,
        certificate=b"worker-cert",
        verifier=verifier or (lambda der: der.decode()),
        role=wire.Role.WORKER,
        info={"who": "worker"},
        handler=net.NullHandler(),
        config=FAST,
    )


async def test_each_side_verifies_the_others_certificate() -> None:
    hub = net.MemoryHub()
    listener = await _listen(hub)
    conn = await _connect(hub, listener.port)
    try:
        assert conn.peer.attestation == "proxy-cert" and conn.peer.info == {"who": "proxy"}
        assert await conn.query("hi", {}) == {"echo": "hi", "peer": "worker-cert"}
        assert len(listener.connections) == 1 and listener.statistics()["accepted"] == 1
    finally:
        await conn.aclose()
        await listener.aclose()


@pytest.mark.parametrize("side", ["dialer", "listener"])
async def test_a_refused_certificate_leaves_no_link(side: str) -> None:
    hub = net.MemoryHub()
    listener = await _listen(hub, _refuse if side == "listener" else None)
    with pytest.raises(net.HandshakeRefused):
        await _connect(hub, listener.port, _refuse if side == "dialer" else None)
    assert listener.connections == frozenset() and listener.statistics()["accepted"] == 0
    await listener.aclose()


async def test_names_are_unique_and_closed_listeners_refuse() -> None:
    hub = net.MemoryHub()
    listener = await _listen(hub)
    with pytest.raises(net.ConnectError, match="already listening"):
        await hub.serve(
            "proxy.test",
            listener.port,
            certificate=b"x",
            verifier=None,
            role=wire.Role.PROXY,
            info={},
            handler=_Echo(),
        )
    await listener.aclose()
    with pytest.raises(net.ConnectError, match="nothing listens"):
        await _connect(hub, listener.port)


async def test_a_dialer_reconnects_over_the_hub() -> None:
    hub = net.MemoryHub()
    listener = await _listen(hub)
    dialer = hub.dialer(
        "proxy.test",
        listener.port,
        certificate=b"worker-cert",
        verifier=lambda der: der.decode(),
        role=wire.Role.WORKER,
        info={},
        handler=net.NullHandler(),
        config=FAST,
    )
    await dialer.start()
    try:
        first = await dialer.wait_connected()
        (inbound,) = listener.connections
        await inbound.aclose("restart")
        await first.wait_closed()
        second = await dialer.wait_connected()
        assert second is not first and dialer.connects == 2
    finally:
        await dialer.aclose()
        await listener.aclose()
