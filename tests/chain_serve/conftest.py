"""A LocalChain file with a funded wallet, and development liteservers serving it."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cocoon.chain import TON, KeyPair, LiteChain, LocalChain, Wallet
from cocoon.chain.liteserver import DevLiteServer, ServerKey


@dataclass
class Served:
    path: Path
    key: ServerKey
    wallet: Wallet
    servers: list[DevLiteServer]

    @property
    def public_key(self) -> str:
        return base64.b64encode(self.key.public).decode()

    def lite(self, *, dev_chain: bool = True) -> LiteChain:
        entries = [("127.0.0.1", s.port, self.public_key) for s in self.servers]
        return LiteChain.from_liteservers(entries, dev_chain=dev_chain)

    async def add_server(self, port: int = 0) -> DevLiteServer:
        server = DevLiteServer(self.path, self.key, port=port)
        await server.start()
        self.servers.append(server)
        return server


@pytest.fixture
def chain_file(tmp_path: Path) -> tuple[Path, Wallet]:
    path = tmp_path / "chain" / "local.sqlite"
    wallet = Wallet(KeyPair.generate())
    chain = LocalChain(path)
    chain.faucet_sync(wallet.address, 50 * TON)
    chain.close()
    return path, wallet


@pytest.fixture
async def served(chain_file: tuple[Path, Wallet]) -> AsyncIterator[Served]:
    path, wallet = chain_file
    s = Served(path, ServerKey(os.urandom(32)), wallet, [])
    await s.add_server()
    try:
        yield s
    finally:
        for server in s.servers:
            await server.aclose()


@pytest.fixture
def local_view(chain_file: tuple[Path, Wallet]) -> Callable[[], LocalChain]:
    """Opens the same chain file directly, to compare with what the liteserver says."""
    return lambda: LocalChain(chain_file[0])
