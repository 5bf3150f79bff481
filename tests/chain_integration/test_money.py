"""The local network with real money on the embedded chain (LocalChain, real TVM), scripted engines.

Requests are billed against the on-chain client contract; the proxy's settlement loop anchors its
state, charges the client contract, pays the worker contract and tells the worker; a restored old
ledger is refused; the app's side of the contract (top-up, withdraw, close) works over the client's
HTTP API and CLI; nothing is created or lost on chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from cocoon.chain import (
    STATE_CLOSED,
    STATE_CLOSING,
    TON,
    AccountNotFound,
    KeyPair,
    LocalChain,
    Op,
    Wallet,
    read_client_state,
    read_proxy_state,
    read_worker_state,
)
from cocoon.cli.client_cmd import app as client_cli
from cocoon.client import Client, ClientConfig
from cocoon.core.keyfile import load_seed
from cocoon.errors import ConfigError
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.trustdocs import anchor_hash, document_digest
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.config import PricingSettings, ProxyChainSettings
from cocoon.proxy.errors import StoreRolledBack
from cocoon.worker import Worker, WorkerConfig

MODEL = "scripted-model"
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
PRICE = 2000  # LocalNetworkConfig's default pricing: nanoTON per adjusted token
FEE = 1000
# Settle everything at once, quickly: tests must see charges and payouts within a second.
EAGER = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 1,
    "min_idle_worker_payout_nano": 1,
}


def _config(home: Path, **overrides: Any) -> LocalNetworkConfig:
    settings: dict[str, Any] = {"chain": True, "client_credit_nano": 5 * TON, "proxy_chain": EAGER}
    return LocalNetworkConfig.ephemeral(home, workers=1, **{**settings, **overrides})


async def _network(home: Path, engine: ScriptedEngine | None = None, **overrides: Any) -> LocalNetwork:
    engine = engine or ScriptedEngine(Script(chunks=3))
    network = LocalNetwork(_config(home, **overrides), engine_factory=lambda _i: engine)
    await network.start()
    return network


@contextlib.asynccontextmanager
async def _running(home: Path, **overrides: Any) -> AsyncIterator[LocalNetwork]:
    network = await _network(home, **overrides)
    try:
        yield network
    finally:
        await network.stop()


def _oai(network: LocalNetwork) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0, timeout=30)


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the chain has no change events
            await asyncio.sleep(0.05)


def _chain(network: LocalNetwork) -> LocalChain:
    assert network.chain is not None
    return network.chain


def _sync(network: LocalNetwork) -> Any:
    assert network.proxy is not None and network.proxy.chain_sync is not None
    return network.proxy.chain_sync


def _ledger(network: LocalNetwork) -> Any:
    assert network.proxy is not None and network.proxy.ledger is not None
    return network.proxy.ledger


async def _ask(network: LocalNetwork, n: int = 1) -> int:
    """n chat requests; returns what they cost in total (as the answers say)."""
    total = 0
    async with _oai(network) as oai:
        for _ in range(n):
            reply = await oai.chat.completions.create(**CHAT)
            assert reply.usage is not None
            total += int((reply.usage.model_extra or {})["cost"])
    return total


async def test_requests_settle_on_chain_and_money_is_conserved(tmp_path: Path) -> None:
    async with _running(tmp_path) as network:
        chain, sync, ledger = _chain(network), _sync(network), _ledger(network)
        assert network.proxy is not None and network.proxy.params.price_per_token == PRICE
        cost = await _ask(network, 3)
        (client,) = ledger.clients()
        (worker,) = ledger.workers()
        assert client.cost_nano == cost > 0 and client.tokens * PRICE == cost
        contract = client.contract
        worker_contract = worker.contract

        async def settled() -> bool:
            c = await read_client_state(chain, _addr(contract))
            try:
                w = await read_worker_state(chain, _addr(worker_contract))
            except AccountNotFound:
                return False
            return bool(c.tokens_used == client.tokens and w.tokens == worker.tokens)

        await _eventually(settled)
        state = await read_client_state(chain, _addr(contract))
        assert state.balance == 5 * TON - client.tokens * PRICE  # charged exactly the ledger's cost
        proxy_state = await read_proxy_state(chain, sync.proxy_address)
        # The commit binds this session to the worker statistics it anchored (proxy.integrity).
        anchored = ledger.anchor(proxy_state.commit_seqno)
        assert anchored is not None and anchored.session_hash == sync.session_hash
        assert proxy_state.session_hash == anchor_hash(sync.session_hash, document_digest(anchored.document))
        assert ledger.statistics().last_committed_seqno == proxy_state.commit_seqno >= 2
        # The proxy keeps the difference: charges in, worker payouts out, its stake untouched.
        assert proxy_state.balance == client.tokens * (PRICE - FEE)
        assert proxy_state.stake == TON
        # The worker's wallet received its earnings; the worker was told.
        payee = await chain.get_account(_addr(worker.worker))
        assert payee.balance == pytest.approx(worker.tokens * FEE, rel=0.01)

        async def told() -> bool:
            # Payouts may come in steps (a commit can land between requests): wait for the last notice.
            return any(
                p.get("paid_nano") == worker.tokens * FEE for p in network.workers[0].payments.values()
            )

        await _eventually(told)
        (payment,) = network.workers[0].payments.values()
        assert payment["paid_nano"] == payment["earned_nano"] == worker.tokens * FEE
        assert payment["adjusted_tokens"] == worker.tokens
        stats = sync.statistics()
        assert stats["charges_posted"] >= 1 and stats["payouts_posted"] >= 1 and stats["commits_seen"] >= 2
        assert stats["errors"] == 0
        # The operator's fees move to the proxy's wallet once over the threshold (here: any).
        fees = proxy_state.balance
        sync.settings = sync.settings.model_copy(update={"withdraw_fees_above_nano": 1})
        await sync.tick()
        assert (await read_proxy_state(chain, sync.proxy_address)).balance == 0
        assert sync.statistics()["fees_withdrawn"] == 1
        received = [t for t in await chain.get_transactions(sync.wallet.address) if t.in_op == Op.PAYOUT]
        assert [t.value_in for t in received] == [fees]
        # Nothing is created or lost: every nanoTON the faucet minted is in an account or paid as a fee.
        assert chain.totals().conserved


async def test_client_without_funds_on_chain_gets_402_then_pays_after_top_up(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=2))
    network = await _network(tmp_path, engine, client_credit_nano=0)
    try:
        async with _oai(network) as oai:
            with pytest.raises(openai.APIStatusError) as info:
                await oai.chat.completions.create(**CHAT)
            assert info.value.status_code == 402
            api = network.base_url.removesuffix("/v1")
            assert network.client is not None  # money endpoints need the client's admin token
            admin = {"authorization": f"Bearer {network.client.admin_token}"}
            async with httpx.AsyncClient(timeout=30, headers=admin) as http:
                # A top-up too small for the request's reservation still gets 402.
                r = await http.post(f"{api}/cocoon/top-up", json={"amount_nano": 1000})
                assert r.status_code == 200 and r.json()["chain"]["balance_nano"] == 1000
                with pytest.raises(openai.APIStatusError) as info:
                    await oai.chat.completions.create(**CHAT)
                assert info.value.status_code == 402
                assert engine.stats.opened == 0  # no work without funds
                r = await http.post(f"{api}/cocoon/top-up", json={"amount_nano": 2 * TON})
                assert r.status_code == 200
                reply = await oai.chat.completions.create(**CHAT)
                assert reply.choices[0].message.content
                bad = await http.post(f"{api}/cocoon/top-up", json={"amount_nano": -1})
                assert bad.status_code == 400
    finally:
        await network.stop()


async def test_client_keeps_its_contract_funded_automatically(tmp_path: Path) -> None:
    auto = {"auto_top_up_nano": 2 * TON, "top_up_below_nano": TON, "check_interval_s": 0.1}
    async with _running(tmp_path, client_credit_nano=0, client_chain=auto) as network:
        assert network.client is not None
        account = await network.client.contract()

        async def funded() -> bool:
            state = await account.state()
            return state is not None and state.balance == 2 * TON

        await _eventually(funded)
        assert await _ask(network) > 0


@pytest.mark.parametrize("grant_refunds", [True, False], ids=["proxy-refunds", "close-after-delay"])
async def test_app_side_lifecycle_withdraw_and_close(tmp_path: Path, grant_refunds: bool) -> None:
    async with _running(tmp_path, proxy_chain={**EAGER, "grant_refunds": grant_refunds}) as network:
        await _ask(network, 2)
        chain = _chain(network)
        assert network.client is not None
        account = await network.client.contract()
        url = network.base_url.removesuffix("/v1")
        runner = CliRunner()

        async def invoke(*args: str) -> Any:
            # The CLI is synchronous and the client serves on this loop: run it beside the loop.
            # --home: the CLI reads the client's admin token there (the money endpoints need it).
            home = str(network.config.home)
            return await asyncio.to_thread(runner.invoke, client_cli, [*args, "--url", url, "--home", home])

        async def cli(*args: str) -> Any:
            result = await invoke(*args, "--json")
            assert result.exit_code == 0, result.output
            return json.loads(result.output)

        shown = await cli("balance")
        assert shown["chain"]["balance_nano"] <= 5 * TON and shown["chain"]["stake_nano"] == TON
        wallet_before = await account.wallet.balance()
        # Above the stake everything may go back (the proxy's unpaid usage is covered by the stake).
        after = (await cli("withdraw"))["chain"]
        assert after["balance_nano"] == TON
        assert await account.wallet.balance() > wallet_before + 3 * TON
        refused = await invoke("withdraw")
        assert refused.exit_code == 1 and "above the stake" in refused.output
        closing = (await cli("close"))["chain"]
        assert closing["state"] in ("closing", "closed")
        tokens = _ledger(network).clients()[0].tokens
        if grant_refunds:
            # Nothing running and (after its next commit) everything anchored: the proxy sends the
            # final charge with the refund, and the client gets the rest back without waiting.

            async def refunded() -> bool:
                return bool((await read_client_state(chain, account.address)).state == STATE_CLOSED)

            await _eventually(refunded)
            state = await read_client_state(chain, account.address)
            assert state.tokens_used == tokens and state.balance == 0
            # What was left after the final charge comes back: the balance at the close minus the
            # tokens the grant charged (those not yet charged when the close began).
            payouts = [
                t
                for t in await account.chain.get_transactions(account.wallet.address)
                if t.in_op == Op.PAYOUT
            ]
            owed = (tokens - closing["tokens_used"]) * PRICE
            assert payouts[0].value_in == closing["balance_nano"] - owed
            assert chain.totals().conserved
            return
        refused = await invoke("close")
        assert refused.exit_code == 1 and "after" in refused.output
        # The proxy charges what is owed while the contract is closing (at its next state commit).

        async def charged() -> bool:
            return bool((await read_client_state(chain, account.address)).tokens_used == tokens)

        await _eventually(charged)
        assert (await read_client_state(chain, account.address)).state == STATE_CLOSING
        chain.advance(network.handles.config.client_delay_before_close + 1)  # type: ignore[union-attr]
        closed = (await cli("close"))["chain"]
        assert closed["state"] == "closed" and closed["balance_nano"] == 0
        assert (await read_client_state(chain, account.address)).state == STATE_CLOSED
        assert chain.totals().conserved


async def test_restored_old_ledger_is_refused_at_proxy_start(tmp_path: Path) -> None:
    ledger_file = tmp_path / "proxy" / "proxy-ledger.sqlite"
    backup = tmp_path / "ledger-backup"
    async with _running(tmp_path) as network:
        await _ask(network)
        await _sync(network).tick()
    backup.mkdir()
    for f in ledger_file.parent.glob("proxy-ledger.sqlite*"):
        shutil.copy2(f, backup / f.name)
    # The same home again: same chain, keys and contracts; the ledger moves on and commits again.
    async with _running(tmp_path) as network:
        assert _ledger(network).clients()[0].tokens > 0  # still funded from the first run's top-up
        await _ask(network)
        sync = _sync(network)
        await sync.tick()
        committed = (await read_proxy_state(_chain(network), sync.proxy_address)).commit_seqno
    with contextlib.closing(sqlite3.connect(backup / "proxy-ledger.sqlite")) as db:
        (old_seqno,) = db.execute("SELECT seqno FROM state").fetchone()
    assert old_seqno < committed  # the chain knows a commit the backup never made
    for f in ledger_file.parent.glob("proxy-ledger.sqlite*"):
        if not f.name.endswith(".lock"):
            f.unlink()
    for f in backup.iterdir():
        shutil.copy2(f, ledger_file.parent / f.name)
    network = LocalNetwork(_config(tmp_path), engine_factory=lambda _i: ScriptedEngine(Script()))
    with pytest.raises(StoreRolledBack, match="older than the last commit on chain"):
        await network.start()
    assert network.proxy is not None and network.proxy.state.value == "stopped"


def _addr(text: Any) -> Any:
    from pytoniq_core.boc.address import Address

    return text if not isinstance(text, str) else Address(text)


async def test_root_contract_sets_prices_and_admission(tmp_path: Path) -> None:
    pricing = PricingSettings(price_per_token=3000, worker_fee_per_token=1500)
    async with _running(tmp_path / "net", pricing=pricing) as network:
        proxy, client = network.proxy, network.client
        assert proxy is not None and client is not None
        assert proxy.config.pricing.price_per_token == 2000  # the config's price is not used...
        assert proxy.params.price_per_token == 3000  # ...the root's is
        assert await _ask(network) == _ledger(network).clients()[0].tokens * 3000
        assert proxy.allowed_model_hashes == frozenset({hashlib.sha256(MODEL.encode()).digest()})
        # A worker serving a model the root does not allow is refused at the handshake.
        rogue = Worker(
            WorkerConfig(
                home=tmp_path / "rogue",
                proxies=[f"127.0.0.1:{proxy.worker_port}"],
                owner_address=_wallet(tmp_path / "rogue-wallet.key"),
                tee=network._tee(accept="proxy"),
                health_port=0,
            ),
            engine=ScriptedEngine(Script(), model_name="unlisted-model"),
        )
        # A client naming the network client's wallet without proving it holds it is refused too.
        impostor = Client(
            ClientConfig(
                home=tmp_path / "impostor",
                http_port=0,
                proxies=[f"127.0.0.1:{proxy.client_port}"],
                owner_address=client.config.owner_address,
                tee=network._tee(accept="proxy"),
            )
        )
        await rogue.start()
        await impostor.start()
        try:
            await asyncio.sleep(1.0)
            assert [r.model for r in proxy.registry.records()] == [MODEL]
            assert impostor.links() == [] and len(proxy._client_links) == 1
        finally:
            await impostor.stop()
            await rogue.stop(drain=False)


def _wallet(key_file: Path) -> str:
    from cocoon.chain import KeyPair, Wallet
    from cocoon.core.keyfile import load_or_create_seed

    return str(Wallet(KeyPair.from_seed(load_or_create_seed(key_file))).address.to_str())  # type: ignore[no-untyped-call]


async def test_a_new_proxy_opens_its_contract_from_its_funded_wallet(tmp_path: Path) -> None:
    async with _running(tmp_path / "net") as network:
        assert network.handles is not None and network.proxy is not None
        home = tmp_path / "proxy-2"
        root = str(network.handles.root.to_str())  # type: ignore[no-untyped-call]

        def proxy() -> Proxy:
            settings = ProxyChainSettings(local_path=network.chain_path, root_address=root)
            config = ProxyConfig(
                home=home,
                worker_port=0,
                client_port=0,
                stats_port=0,
                tee=network._tee(accept="worker"),
                chain=settings,
            )
            return Proxy(config, chain=network.chain)

        with pytest.raises(ConfigError, match="ACTION REQUIRED: fund the proxy wallet"):
            await proxy().start()
        wallet = Wallet(KeyPair.from_seed(load_seed(home / "chain-wallet.key")))
        await network.handles.fund(wallet.address, 3 * TON)
        second = proxy()
        await second.start()
        try:
            assert second.chain_sync is not None and second.chain_sync.proxy_address is not None
            state = await read_proxy_state(_chain(network), second.chain_sync.proxy_address)
            assert state.stake == TON and state.commit_seqno >= 1
            assert second.chain_sync.proxy_address != network.proxy.chain_sync.proxy_address  # type: ignore[union-attr]
        finally:
            await second.stop()
