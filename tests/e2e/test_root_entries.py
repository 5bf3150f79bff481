"""``proxies_from_root`` with the root's two-address proxy entries: a worker dials the entry's
workers' address and a client its clients' address (each port refuses the other role), and the
request goes through. A one-address entry sends both to the same address, as before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from cocoon.chain import KeyPair, LocalChain, bootstrap_local_network
from cocoon.client import Client, ClientConfig
from cocoon.client.config import ClientChainSettings
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.config import WorkerRootSettings

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
NOWHERE = "127.0.0.1:1"  # configured, but proxies_from_root must not dial it


async def test_workers_and_clients_dial_their_own_address_of_a_root_entry(tmp_path: Path) -> None:
    tee = TeeSettings(sim_home=tmp_path)
    proxy = Proxy(
        ProxyConfig(
            home=tmp_path / "proxy",
            worker_port=0,
            client_port=0,
            stats_port=0,
            tee=tee,
            test_credit_nano=10**12,
        )
    )
    await proxy.start()
    chain_path = tmp_path / "chain.sqlite"
    chain = LocalChain(chain_path)
    workers_at, clients_at = f"127.0.0.1:{proxy.worker_port}", f"127.0.0.1:{proxy.client_port}"
    handles = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={},
        proxy_addresses=[f"{workers_at} {clients_at}"],  # the reference's two-address entry
    )
    root = handles.root.to_str()  # type: ignore[no-untyped-call]
    (entry,) = handles.config.proxy_entries
    assert (entry.worker_address, entry.client_address) == (workers_at, clients_at)
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker",
            health_port=0,
            proxies=[NOWHERE],
            tee=tee,
            root=WorkerRootSettings(local_path=chain_path, root_address=root),
        ),
        engine=ScriptedEngine(Script(chunks=2)),
    )
    client = Client(
        ClientConfig(
            home=tmp_path / "client",
            http_port=0,
            proxies=[NOWHERE],
            tee=tee,
            chain=ClientChainSettings(local_path=chain_path, root_address=root, proxies_from_root=True),
        ),
        chain=chain,
    )
    try:
        await worker.start()
        await client.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
            await client.wait_connected()
        assert [f"{d.host}:{d.port}" for d in worker._dialers] == [workers_at]
        assert [address for address, _ in client._dialers] == [clients_at]
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text
        assert proxy.counters["succeeded"] == 1
    finally:
        await client.stop()
        await worker.stop()
        await proxy.stop()
        await chain.aclose()
