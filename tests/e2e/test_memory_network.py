"""A whole network whose node links are in memory (one net.MemoryHub): no sockets between proxy,
worker and client, and still every link attested, every answer billed and its receipt verified."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from cocoon import net
from cocoon.client import Client, ClientConfig
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_network_over_memory_links_answers_and_bills(tmp_path: Path) -> None:
    hub = net.MemoryHub()
    tee = TeeSettings(sim_home=tmp_path)
    proxy = Proxy(
        ProxyConfig(
            home=tmp_path / "proxy",
            worker_port=0,
            client_port=0,
            stats_port=0,
            test_credit_nano=10**12,
            tee=tee,
        ),
        links=hub,
    )
    await proxy.start()
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker", proxies=[f"127.0.0.1:{proxy.worker_port}"], health_port=0, tee=tee
        ),
        engine=ScriptedEngine(Script(chunks=3)),
        links=hub,
    )
    client = Client(
        ClientConfig(
            home=tmp_path / "client", http_port=0, proxies=[f"127.0.0.1:{proxy.client_port}"], tee=tee
        ),
        links=hub,
    )
    try:
        await worker.start()
        await client.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
            await client.wait_connected()
            while not proxy.registry.records():  # noqa: ASYNC110 - the proxy admits the worker on hello
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            records = (await http.get(f"{client.base_url.removesuffix('/v1')}/cocoon/receipts")).json()[
                "receipts"
            ]
        assert answer.status_code == 200 and answer.json()["choices"]
        assert proxy.counters["succeeded"] == 1
        assert len(records) == 1 and records[0]["receipt_verified"], records
        assert proxy.trust is not None
        assert records[0]["attested"]["proxy_key"] == proxy.trust.identity.public_key.hex()
    finally:
        await client.stop()
        await worker.stop()
        await proxy.stop()
