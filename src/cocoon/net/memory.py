"""Two linked nodes over in-memory transports: the same NodeConnection code, no sockets, no TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from cocoon import wire
from cocoon.net.config import DEFAULT_CONFIG, NetConfig
from cocoon.net.connection import Handler, NodeConnection, establish
from cocoon.net.dialer import _dialer_on_connect
from cocoon.net.transport import memory_transport_pair

__all__ = ["memory_pair"]


async def memory_pair(
    *,
    dialer_role: wire.Role,
    dialer_info: Mapping[str, Any],
    dialer_handler: Handler,
    acceptor_role: wire.Role,
    acceptor_info: Mapping[str, Any],
    acceptor_handler: Handler,
    dialer_attestation: object = None,
    acceptor_attestation: object = None,
    config: NetConfig = DEFAULT_CONFIG,
) -> tuple[NodeConnection, NodeConnection]:
    """(dialer side, acceptor side), both running; ``*_attestation`` is what the *other* side sees
    as ``peer.attestation`` (the stand-in for a verified certificate)."""
    a, b = memory_transport_pair(a_certificate=b"memory-dialer", b_certificate=b"memory-acceptor")
    async with asyncio.TaskGroup() as tg:
        dialing = tg.create_task(
            establish(
                a,
                dialer=True,
                role=dialer_role,
                info=dialer_info,
                handler=dialer_handler,
                verifier=lambda _der: acceptor_attestation,
                config=config,
            )
        )
        accepting = tg.create_task(
            establish(
                b,
                dialer=False,
                role=acceptor_role,
                info=acceptor_info,
                handler=acceptor_handler,
                verifier=lambda _der: dialer_attestation,
                config=config,
            )
        )
    dialer, acceptor = dialing.result(), accepting.result()
    acceptor._start()
    dialer._start()
    try:
        await _dialer_on_connect(dialer, dialer_handler)
    except BaseException:
        await acceptor.aclose("dialer refused")
        raise
    return dialer, acceptor
