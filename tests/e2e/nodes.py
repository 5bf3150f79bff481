"""Three hand-built nodes (proxy, one worker, client) sharing one sim platform, for tests that need
the service objects themselves rather than a whole :class:`~cocoon.localnet.LocalNetwork`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cocoon import net
from cocoon.client import Client, ClientConfig
from cocoon.inference import Engine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig


@contextlib.asynccontextmanager
async def started_nodes(
    home: Path,
    engine: Engine,
    *,
    links: net.Links | None = None,
    tee_settings: TeeSettings | None = None,
    **proxy_settings: Any,
) -> AsyncIterator[tuple[Proxy, Worker, Client]]:
    """Start proxy, worker and client; yield once the proxy has admitted the worker; stop all three."""
    tee = tee_settings or TeeSettings(sim_home=home)
    proxy = Proxy(
        ProxyConfig(
            home=home / "proxy", worker_port=0, client_port=0, stats_port=0, tee=tee, **proxy_settings
        ),
        links=links,
    )
    await proxy.start()
    worker = Worker(
        WorkerConfig(
            home=home / "worker", proxies=[f"127.0.0.1:{proxy.worker_port}"], health_port=0, tee=tee
        ),
        engine=engine,
        links=links,
    )
    client = Client(
        ClientConfig(home=home / "client", http_port=0, proxies=[f"127.0.0.1:{proxy.client_port}"], tee=tee),
        links=links,
    )
    try:
        await worker.start()
        await client.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
            await client.wait_connected()
            while not proxy.registry.records():  # noqa: ASYNC110 - the proxy admits the worker on hello
                await asyncio.sleep(0.05)
        yield proxy, worker, client
    finally:
        await client.stop()
        await worker.stop()
        await proxy.stop()
