"""A client can take its proxy list from the root contract instead of its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon.chain import KeyPair, LocalChain, bootstrap_local_network
from cocoon.client import Client, ClientConfig
from cocoon.client.config import ClientChainSettings
from cocoon.client.service import client_addresses
from cocoon.errors import ConfigError


def test_client_side_address_of_each_registered_entry() -> None:
    entries = [
        "10.0.0.1:11002",
        "10.0.0.2:11001 10.0.0.2:11002",
        "garbage",
        "a b c",
        "h:99999",
        "10.0.0.1:11002",
    ]
    assert client_addresses(entries) == ["10.0.0.1:11002", "10.0.0.2:11002"]


async def test_client_reads_registered_proxies_from_the_root(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = LocalChain(path)
    handles = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        model_hashes=[],
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
