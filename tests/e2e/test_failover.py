"""A client and a worker connected to two proxies keep working when one proxy dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai

from cocoon.client import Client, ClientConfig
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_client_fails_over_to_the_second_proxy(tmp_path: Path) -> None:
    tee = TeeSettings(sim_home=tmp_path)
    proxies = [
        Proxy(
            ProxyConfig(
                home=tmp_path / f"proxy-{i}",
                worker_port=0,
                client_port=0,
                stats_port=0,
                test_credit_nano=10**12,
                tee=tee,
            )
        )
        for i in range(2)
    ]
    for proxy in proxies:
        await proxy.start()
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker",
            proxies=[f"127.0.0.1:{p.worker_port}" for p in proxies],
            health_port=0,
            owner_address="w",
            tee=tee,
        ),
        engine=ScriptedEngine(Script(chunks=3)),
    )
    client = Client(
        ClientConfig(
            home=tmp_path / "client",
            http_port=0,
            proxies=[f"127.0.0.1:{p.client_port}" for p in proxies],
            owner_address="c",
            tee=tee,
        )
    )
    try:
        await worker.start()
        await client.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
            while len(client.links()) < 2 or any(not p.registry.records() for p in proxies):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert all(
            p["clock_skew_s"] is not None and abs(p["clock_skew_s"]) < 5
            for p in client.statistics()["proxies"]
        )
        async with openai.AsyncOpenAI(
            base_url=client.base_url, api_key="x", max_retries=0, timeout=20
        ) as oai:
            assert (await oai.chat.completions.create(**CHAT)).choices  # type: ignore[call-overload]
            assert proxies[0].counters["succeeded"] == 1
            await proxies[0].stop()
            async with asyncio.timeout(10):
                while len(client.links()) > 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            for _ in range(3):
                assert (await oai.chat.completions.create(**CHAT)).choices  # type: ignore[call-overload]
        assert proxies[1].counters["succeeded"] == 3
    finally:
        await client.stop()
        await worker.stop(drain=False)
        for proxy in proxies:
            await proxy.stop()
