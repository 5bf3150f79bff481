from __future__ import annotations

from dataclasses import dataclass

import pytest

from cocoon.chain import network as net
from cocoon.chain.localchain import LocalChain
from cocoon.chain.messages import Params
from cocoon.chain.wallet import KeyPair, Wallet, WalletClient

TON = net.TON


@dataclass
class World:
    chain: LocalChain
    owner: WalletClient
    root: object
    params: Params
    proxy_key: KeyPair
    proxy_owner: WalletClient
    proxy_sc: object
    client: WalletClient
    worker: WalletClient

    async def wallet(self, funds: int = 100 * TON) -> WalletClient:
        w = WalletClient(self.chain, Wallet(KeyPair.generate()))
        await self.chain.faucet(w.address, funds)
        return w


@pytest.fixture
async def world(tmp_path) -> World:
    chain = LocalChain(tmp_path / "chain.sqlite")
    handles = await net.bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[b"\x01" * 32],
        worker_image_hashes=[b"\x02" * 32],
        models={b"\x03" * 32: "model-3"},
        proxy_addresses=["127.0.0.1:8800"],
        params=net.default_params(price_per_token=1000, worker_fee_per_token=800),
    )
    params = handles.config.params
    w = World(chain, handles.owner, handles.root, params, KeyPair.generate(), None, None, None, None)  # type: ignore[arg-type]
    w.proxy_owner = await w.wallet()
    w.client = await w.wallet()
    w.worker = await w.wallet()
    w.proxy_sc = await net.open_proxy_contract(
        w.proxy_owner, w.proxy_key.public, handles.root, params, stake=params.min_proxy_stake
    )
    yield w
    chain.close()
