"""A client can take its proxy list from the root contract instead of its config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cocoon.chain import KeyPair, LocalChain, bootstrap_local_network
from cocoon.client import Client, ClientConfig
from cocoon.client.config import ClientChainSettings
from cocoon.errors import ConfigError
from cocoon.node.trust import registered_proxy_addresses


def test_client_side_address_of_each_registered_entry() -> None:
    entries = [
        "10.0.0.1:11002",
        "10.0.0.2:11001 10.0.0.2:11002",
        "garbage",
        "a b c",
        "h:99999",
        "10.0.0.1:11002",
    ]
    assert registered_proxy_addresses(entries, for_workers=False) == ["10.0.0.1:11002", "10.0.0.2:11002"]
    assert registered_proxy_addresses(entries, for_workers=True) == ["10.0.0.1:11002", "10.0.0.2:11001"]


async def test_client_reads_registered_proxies_from_the_root(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = LocalChain(path)
    handles = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={},
        proxy_addresses=["127.0.0.1:11001 127.0.0.1:11002", "127.0.0.1:12002"],
    )
    root = handles.root.to_str()

    def client(from_root: bool, root_address: str) -> Client:
        settings = ClientChainSettings(
            local_path=path, root_address=root_address, proxies_from_root=from_root
        )
        c = Client(
            ClientConfig(home=tmp_path / "client", proxies=["127.0.0.1:1"], chain=settings), chain=chain
        )
        return c

    assert await client(True, root)._proxy_addresses() == ["127.0.0.1:11002", "127.0.0.1:12002"]
    assert await client(False, root)._proxy_addresses() == ["127.0.0.1:1"]
    with pytest.raises(ConfigError):
        await client(True, "")._proxy_addresses()


async def test_worker_takes_model_allowlist_and_proxies_from_the_root(tmp_path: Path) -> None:
    import hashlib

    from cocoon.errors import ServiceError
    from cocoon.inference import Script, ScriptedEngine
    from cocoon.worker import Worker, WorkerConfig
    from cocoon.worker.config import WorkerRootSettings

    engine_model_hash = hashlib.sha256(b"scripted-model").digest()  # how a worker names a model it can't read
    path = tmp_path / "chain.sqlite"
    chain = LocalChain(path)
    allowed = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={engine_model_hash: "scripted-model"},
        proxy_addresses=["127.0.0.1:11001 127.0.0.1:11002"],
    )
    other = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={b"\x07" * 32: "other-model"},
        proxy_addresses=["127.0.0.1:11001"],
    )
    renamed = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={engine_model_hash: "Qwen/Qwen3-0.6B"},  # our weights, but under another name
        proxy_addresses=["127.0.0.1:11001"],
    )
    await chain.aclose()

    def worker(root: str) -> Worker:
        settings = WorkerRootSettings(local_path=path, root_address=root)
        config = WorkerConfig(home=tmp_path / "w", health_port=0, proxies=["127.0.0.1:1"], root=settings)
        return Worker(config, engine=ScriptedEngine(Script(chunks=1)))

    allowed_worker = worker(allowed.root.to_str())
    assert await allowed_worker._root_lists() == ({engine_model_hash.hex()}, ["127.0.0.1:11001"])
    refused = worker(other.root.to_str())
    with pytest.raises(ServiceError, match="not allowed"):
        await refused.start()
    # Announcing allowed weights under another name than the root's would only be refused by proxies.
    with pytest.raises(
        ServiceError, match=re.escape("allows this model only as 'Qwen/Qwen3-0.6B', not 'scripted-model'")
    ):
        await worker(renamed.root.to_str()).start()
