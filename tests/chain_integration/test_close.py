"""The proxy close flow on the embedded chain: close request, refunds and last payouts, close complete
after the delay; every contract ends closed, everyone gets what they are owed, nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai

from cocoon.chain import (
    STATE_CLOSED,
    STATE_CLOSING,
    TON,
    KeyPair,
    LocalChain,
    Wallet,
    WalletClient,
    read_client_state,
    read_proxy_state,
    read_worker_state,
)
from cocoon.chain import parse_address as addr
from cocoon.core.keyfile import load_seed
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.closing import close_proxy, close_step

CHAT: dict[str, Any] = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
FEE = 1000
# Charge clients at once but never pay workers before the close: the last payout pays everything.
SETTLE = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 10**18,
    "min_idle_worker_payout_nano": 10**18,
}


def _wallet(chain: LocalChain, key_file: Path) -> WalletClient:
    return WalletClient(chain, Wallet(KeyPair.from_seed(load_seed(key_file))))


async def test_close_refunds_clients_pays_workers_and_returns_the_stake(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(
        tmp_path, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=SETTLE
    )
    network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=3)))
    await network.start()
    try:
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            for _ in range(3):
                await oai.chat.completions.create(**CHAT)
        assert network.client is not None and network.proxy is not None
        await network.client.stop()  # nothing in flight: the proxy serves nobody while it closes
        for worker in network.workers:
            await worker.stop()
        proxy, chain = network.proxy, network.chain
        sync = proxy.chain_sync
        assert sync is not None and isinstance(chain, LocalChain) and sync.proxy_address is not None
        assert proxy.ledger is not None
        (client,) = proxy.ledger.clients()
        (worker_totals,) = proxy.ledger.workers()
        client_wallet = _wallet(chain, tmp_path / "client" / "wallet.key")
        worker_wallet = _wallet(chain, tmp_path / "worker-0" / "wallet.key")
        client_before = await client_wallet.balance()
        worker_before = await worker_wallet.balance()
        before_close = await read_client_state(chain, addr(client.contract))
        owed = (client.tokens - before_close.tokens_used) * client.price_per_token  # the final charge

        first = await close_step(sync, time.time())
        assert first.state == STATE_CLOSING and not first.closed
        assert first.clients_refunded == [client.client] and first.workers_paid == [worker_totals.worker]
        client_state = await read_client_state(chain, addr(client.contract))
        assert client_state.state == STATE_CLOSED and client_state.tokens_used == client.tokens
        worker_state = await read_worker_state(chain, addr(worker_totals.contract))
        assert worker_state.state == STATE_CLOSED and worker_state.tokens == worker_totals.tokens
        # The client gets back all it had not spent; the worker everything it earned.
        refund = await client_wallet.balance() - client_before
        # (less the contract's own storage and forwarding fees: a few thousand nanoTON)
        assert before_close.balance - owed - 10**6 < refund <= before_close.balance - owed
        assert await worker_wallet.balance() - worker_before == worker_totals.tokens * FEE

        # Too early for close complete; the same step again changes nothing and posts nothing twice.
        again = await close_step(sync, time.time())
        assert again.state == STATE_CLOSING and again.clients_refunded == [] and again.workers_paid == []
        proxy_state = await read_proxy_state(chain, sync.proxy_address)
        holdings = proxy_state.balance + proxy_state.stake
        owner_before = await sync.wallet.balance()
        # The owner completes the close later, the proxy stopped, from its home (cocoon proxy close).
        await proxy.stop()
        chain.advance(proxy_state.unlock_ts - await chain.now() + 1)
        last = await close_proxy(proxy.config, chain=chain)
        assert last.closed and last.state == STATE_CLOSED
        gained = await sync.wallet.balance() - owner_before
        assert holdings - TON // 10 < gained <= holdings  # fees and stake, less the post's gas
        assert chain.totals().conserved
    finally:
        await network.stop()
