"""A small in-process network for proxy tests: one Proxy, real Workers on given engines, a real Client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoon import net
from cocoon.client import Client, ClientConfig
from cocoon.inference import ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.ledger import BillingLedger
from cocoon.worker import Worker, WorkerConfig

MODEL = "scripted-model"
CLIENT = "app"


@dataclass
class Net:
    proxy: Proxy
    workers: list[Worker]
    client: Client

    @property
    def link(self) -> net.NodeConnection:
        return self.client.links()[0]

    @property
    def ledger(self) -> BillingLedger:
        assert self.proxy.ledger is not None
        return self.proxy.ledger


@contextlib.asynccontextmanager
async def network(tmp_path: Path, engines: Sequence[ScriptedEngine], **proxy: Any) -> AsyncIterator[Net]:
    tee = TeeSettings(sim_home=tmp_path)
    config = ProxyConfig(
        home=tmp_path / "proxy", worker_port=0, client_port=0, stats_port=0, test_credit_nano=10**15, tee=tee
    )
    p = Proxy(config.model_copy(update=proxy))
    await p.start()
    workers = [
        Worker(
            WorkerConfig(
                home=tmp_path / f"worker-{i}",
                proxies=[f"127.0.0.1:{p.worker_port}"],
                health_port=0,
                owner_address=f"owner-{i}",
                tee=tee,
            ),
            engine=engine,
        )
        for i, engine in enumerate(engines)
    ]
    client = Client(
        ClientConfig(
            home=tmp_path / "client",
            http_port=0,
            proxies=[f"127.0.0.1:{p.client_port}"],
            owner_address=CLIENT,
            tee=tee,
        )
    )
    try:
        for w in workers:
            await w.start()
        await client.start()
        async with asyncio.timeout(20):
            await asyncio.gather(*(w.wait_connected() for w in workers), client.wait_connected())
            while len(p.registry.records()) < len(workers):  # noqa: ASYNC110 - no registry event
                await asyncio.sleep(0.02)
        yield Net(p, workers, client)
    finally:
        await client.stop()
        for w in workers:
            await w.stop(drain=False)
        await p.stop()
