"""Payment statements on the embedded chain: the worker holds the proxy's signed payout and claims it
itself when the proxy never posts it; a proxy whose books went back is refused at connect."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from cocoon.chain import (
    TON,
    AccountNotFound,
    KeyPair,
    LocalChain,
    TransactionFailed,
    WalletClient,
    read_worker_state,
)
from cocoon.cli.main import app as cli
from cocoon.core.keyfile import load_seed
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.statements import STORE_NAME, Statement, StatementError, StatementStore, claim
from cocoon.proxy.ledger import WorkerTotals

MODEL = "scripted-model"
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
FEE = 1000  # nanoTON per adjusted token to the worker (LocalNetworkConfig's default root)
# Commit and charge at once, but never pay a worker: the proxy "stalls" before posting payouts.
NO_PAYOUTS = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 10**18,
    "min_idle_worker_payout_nano": 10**18,
}


async def _network(home: Path) -> LocalNetwork:
    config = LocalNetworkConfig.ephemeral(
        home, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=NO_PAYOUTS
    )
    network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=3)))
    await network.start()
    return network


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the chain and the store have no change events
            await asyncio.sleep(0.05)


async def _ask(network: LocalNetwork, n: int) -> None:
    async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
        for _ in range(n):
            await oai.chat.completions.create(**CHAT)


def _worker_totals(network: LocalNetwork) -> WorkerTotals:
    assert network.proxy is not None and network.proxy.ledger is not None
    (totals,) = network.proxy.ledger.workers()
    return totals


async def _held_statement(network: LocalNetwork) -> Statement:
    """Wait until the worker holds a statement for everything its proxy committed."""
    store = network.workers[0].statements.store
    held: list[Statement] = []

    async def holds_all() -> bool:
        totals = _worker_totals(network)
        statements = list(store.load().values())
        held[:] = statements
        return bool(
            totals.committed_tokens == totals.tokens > 0
            and statements
            and statements[0].counter == totals.committed_tokens
        )

    await _eventually(holds_all)
    return held[0]


async def test_worker_claims_its_payout_when_the_proxy_stops_before_posting(tmp_path: Path) -> None:
    network = await _network(tmp_path)
    try:
        await _ask(network, 3)
        statement = await _held_statement(network)
        assert network.proxy is not None and network.proxy.chain_sync is not None
        assert network.proxy.chain_sync.stats.payouts_posted == 0
        # The client holds its signed charge too (what it owes at most, checked at every connect).
        assert network.client is not None and network.proxy.ledger is not None
        client_store = network.client.statements.store

        async def client_holds_all() -> bool:
            (totals,) = network.proxy.ledger.clients()  # type: ignore[union-attr]
            held = list(client_store.load().values())
            return bool(held and held[0].counter == totals.committed_tokens > 0)

        await _eventually(client_holds_all)
        store_file = tmp_path / "worker-0" / STORE_NAME
        assert stat.S_IMODE(store_file.stat().st_mode) == 0o600
        tokens = _worker_totals(network).committed_tokens
        await network.proxy.stop()  # the proxy is gone: nobody will post the payout but the worker
        chain = network.chain
        assert isinstance(chain, LocalChain)
        with pytest.raises(AccountNotFound):
            await read_worker_state(chain, statement.message.target)
        # The owner's wallet (paid by the contract) posts the held statement, paying its own gas.
        assert network.handles is not None
        key = KeyPair.from_seed(load_seed(tmp_path / "worker-0" / "wallet.key"))
        wallet: WalletClient = await network.handles.funded_wallet(key, 2 * TON)
        before = await wallet.balance()
        # The owner runs `cocoon worker claim` on the worker's home: it reads the held statement
        # from the file alone and posts it from the owner's wallet.
        assert network.handles is not None
        toml = tmp_path / "worker.toml"
        toml.write_text(
            f'[worker]\nhome = "{tmp_path / "worker-0"}"\n'
            f'[worker.root]\nkind = "embedded"\nlocal_path = "{network.chain_path}"\n'
            f'root_address = "{network.handles.root.to_str()}"\n'  # type: ignore[no-untyped-call]
        )
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["--json", "worker", "claim", "--config", str(toml)]
        )
        assert result.exit_code == 0, result.output
        (claimed,) = json.loads(result.output)
        assert claimed == {"target": statement.target, "counter": tokens, "before": 0, "posted": True}
        assert (await read_worker_state(chain, statement.message.target)).tokens == tokens
        gained = await wallet.balance() - before
        # Paid what it earned, less the gas of its own post (well under 0.1 TON).
        assert tokens * FEE - TON // 10 < gained <= tokens * FEE
        # A replay moves nothing: the contract has paid that counter already.
        (from_disk,) = StatementStore(tmp_path / "worker-0").load().values()
        with pytest.raises(TransactionFailed):
            await claim(chain, wallet, from_disk)
        assert (await read_worker_state(chain, statement.message.target)).tokens == tokens
        again = await asyncio.to_thread(
            CliRunner().invoke, cli, ["--json", "worker", "claim", "--config", str(toml)]
        )
        assert json.loads(again.output)[0]["posted"] is False
    finally:
        await network.stop()


async def test_a_proxy_with_rolled_back_books_is_refused_at_connect(tmp_path: Path) -> None:
    network = await _network(tmp_path)
    try:
        await _ask(network, 2)
        held = await _held_statement(network)
        proxy, worker = network.proxy, network.workers[0]
        assert proxy is not None and proxy.chain_sync is not None
        sync = proxy.chain_sync
        honest = sync.worker_statement

        def rolled_back(totals: WorkerTotals) -> dict[str, str] | None:
            # The proxy's own signer over books that lost the last request.
            return honest(dataclasses.replace(totals, committed_tokens=totals.committed_tokens - 1))

        sync.worker_statement = rolled_back  # type: ignore[method-assign]
        (link,) = [c for c in proxy._worker_links.values()]
        dialer = worker._dialers[0]
        await link.aclose("drop")  # the worker reconnects and asks for its statement again
        await _eventually(lambda: _true(bool(worker.statements.alerts)))
        assert "rolled back" in worker.statements.alerts[0]
        assert dialer.connection is None or dialer.connection.closed
        # What the worker holds is untouched: the higher, honest statement.
        (kept,) = worker.statements.store.load().values()
        assert kept.counter == held.counter
        # A forged statement (not signed by the announced key) is refused too.
        bad = {**held.to_params(), "signing_key": "00" * 32}
        with pytest.raises(StatementError):
            Statement.from_params(bad)
    finally:
        await network.stop()


async def _true(value: bool) -> bool:
    return value
