"""Proxy, worker and client settling real money through `cocoon chain serve`'s liteserver
(``kind = "lite"``, dev_chain): the same outcome as on the embedded chain, read from the file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from cocoon.chain import (
    TON,
    AccountNotFound,
    LiteChain,
    parse_address,
    read_client_state,
    read_proxy_state,
    read_worker_state,
)
from cocoon.chain.liteserver import DevLiteServer, ServerKey, write_global_config
from cocoon.chain.liteserver.globalconfig import liteserver_entry
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.trustdocs import anchor_hash, document_digest

CHAT: dict[str, Any] = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
PRICE, FEE = 2000, 1000
EAGER = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 1,
    "min_idle_worker_payout_nano": 1,
}


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the chain has no change events
            await asyncio.sleep(0.05)


async def test_requests_settle_through_the_liteserver(tmp_path: Path) -> None:
    home = tmp_path / "net"
    server = DevLiteServer(home / "chain" / "local.sqlite", ServerKey(os.urandom(32)))
    await server.start()
    config = tmp_path / "global.config.json"
    write_global_config(config, liteserver_entry("127.0.0.1", server.port, server.key.public))
    net_config = LocalNetworkConfig.ephemeral(
        home, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=EAGER, lite_config=config
    )
    network = LocalNetwork(net_config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=3)))
    await network.start()
    try:
        assert network.proxy is not None and network.proxy.chain_sync is not None
        sync = network.proxy.chain_sync
        assert isinstance(sync.chain, LiteChain)  # the proxy talks to the liteserver, not the file
        async with openai.AsyncOpenAI(
            base_url=network.base_url, api_key="x", max_retries=0, timeout=30
        ) as oai:
            cost = 0
            for _ in range(3):
                reply = await oai.chat.completions.create(**CHAT)
                assert reply.usage is not None
                cost += int((reply.usage.model_extra or {})["cost"])
        ledger = network.proxy.ledger
        assert ledger is not None
        (client,) = await _maybe(ledger.clients())
        (worker,) = await _maybe(ledger.workers())
        assert client.cost_nano == cost > 0 and client.tokens * PRICE == cost
        chain = network.chain
        assert chain is not None

        async def settled() -> bool:
            c = await read_client_state(chain, parse_address(client.contract))
            try:
                w = await read_worker_state(chain, parse_address(worker.contract))
            except AccountNotFound:
                return False
            return bool(c.tokens_used == client.tokens and w.tokens == worker.tokens)

        await _eventually(settled)
        state = await read_client_state(chain, parse_address(client.contract))
        assert state.balance == 5 * TON - client.tokens * PRICE
        assert sync.proxy_address is not None
        proxy_state = await read_proxy_state(chain, sync.proxy_address)
        assert proxy_state.commit_seqno >= 2
        # The commit binds this session to the worker statistics it anchored (proxy.integrity).
        anchored = await _maybe(ledger.anchor(proxy_state.commit_seqno))
        assert anchored is not None and anchored.session_hash == sync.session_hash
        assert proxy_state.session_hash == anchor_hash(sync.session_hash, document_digest(anchored.document))
        assert proxy_state.balance == client.tokens * (PRICE - FEE)
        payee = await chain.get_account(parse_address(worker.worker))
        assert payee.balance == pytest.approx(worker.tokens * FEE, rel=0.01)

        async def posted() -> bool:  # the file may show a post before the proxy's await returns
            stats = sync.statistics()
            return bool(stats["charges_posted"] >= 1 and stats["payouts_posted"] >= 1)

        await _eventually(posted)
        assert sync.statistics()["errors"] == 0
        assert server.queries["sendMessage"] >= 3 and server.queries["getAccountState"] >= 10
        assert chain.totals().conserved
    finally:
        await network.stop()
        await server.aclose()


async def _maybe(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def test_an_unreachable_chain_pauses_settlement_and_it_resumes(tmp_path: Path) -> None:
    home, config = tmp_path / "net", tmp_path / "global.config.json"
    server = DevLiteServer(home / "chain" / "local.sqlite", ServerKey(os.urandom(32)))
    await server.start()
    port, key = server.port, server.key
    write_global_config(config, liteserver_entry("127.0.0.1", port, key.public))
    net_config = LocalNetworkConfig.ephemeral(
        home, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=EAGER, lite_config=config
    )
    network = LocalNetwork(net_config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=3)))
    await network.start()
    try:
        assert network.proxy is not None and network.proxy.chain_sync is not None
        assert network.proxy.ledger is not None and network.chain is not None
        sync, ledger, chain = network.proxy.chain_sync, network.proxy.ledger, network.chain

        async def charged_all() -> bool:
            (client,) = await _maybe(ledger.clients())
            state = await read_client_state(chain, parse_address(client.contract))
            return bool(state.tokens_used == client.tokens > 0)

        async with openai.AsyncOpenAI(
            base_url=network.base_url, api_key="x", max_retries=0, timeout=30
        ) as oai:
            await oai.chat.completions.create(**CHAT)
            await _eventually(charged_all)
            await server.aclose()  # the chain goes away
            errors = sync.statistics()["errors"]
            for _ in range(2):  # service goes on without it
                reply = await oai.chat.completions.create(**CHAT)
                assert reply.choices[0].message.content

            async def paused() -> bool:
                return bool(sync.statistics()["errors"] > errors)

            await _eventually(paused)
            assert not await charged_all()  # what the two answers cost is not on chain yet
            server = DevLiteServer(home / "chain" / "local.sqlite", key, port=port)
            await server.start()  # back on the address the config names
            await _eventually(charged_all)  # settlement resumes by itself
        assert chain.totals().conserved
    finally:
        await network.stop()
        await server.aclose()
