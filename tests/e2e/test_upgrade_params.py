"""A root ``params_version`` change while the network runs (embedded chain, nodes in process): the
proxy closes its old contract (final charges and refunds, last payouts, close complete after the
delay), deploys a new one under the new params, and workers and clients move over by themselves —
their next links name the new contract, the client tops up its new contract from the refund, and
answers are billed at the new price. No nanoTON is created or lost on the way."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

from cocoon.chain import (
    STATE_CLOSED,
    TON,
    KeyPair,
    LocalChain,
    LocalNetworkHandles,
    Op,
    Wallet,
    WalletClient,
    read_client_state,
    read_proxy_state,
    read_worker_state,
    send_root_op,
)
from cocoon.chain import parse_address as addr
from cocoon.client.contract import ClientAccount
from cocoon.client.errors import ClientChainError
from cocoon.core.keyfile import load_seed
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy import Proxy
from cocoon.proxy.contract_record import read_contracts

CHAT: dict[str, Any] = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
OLD_FEE, NEW_PRICE, NEW_FEE = 1000, 3000, 1200
SETTLE = {
    "sync_interval_s": 0.1,
    "root_refresh_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 10**18,  # workers are paid by their last payout, all at once
    "min_idle_worker_payout_nano": 10**18,
}


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - the chain and the links have no change events
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def _network(
    tmp_path: Path, engine_factory: Callable[[int], ScriptedEngine]
) -> AsyncIterator[LocalNetwork]:
    """One worker and a client on the embedded chain, settling fast; stopped after."""
    config = LocalNetworkConfig.ephemeral(
        tmp_path, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=SETTLE
    )
    network = LocalNetwork(config, engine_factory=engine_factory)
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


async def _change_price(handles: LocalNetworkHandles, price: int) -> None:
    """The root's owner changes prices: a new params version."""
    await send_root_op(
        handles.owner, handles.root, Op.CHANGE_PRICE, price_per_token=price, worker_fee_per_token=NEW_FEE
    )


def _wallet(chain: LocalChain, key_file: Path) -> WalletClient:
    return WalletClient(chain, Wallet(KeyPair.from_seed(load_seed(key_file))))


async def _ask(network: LocalNetwork, n: int) -> None:
    async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
        for _ in range(n):
            answer = await oai.chat.completions.create(**CHAT)
            assert answer.choices


def _linked_to(network: LocalNetwork, contract: str) -> bool:
    """Every worker and the client hold a live link whose proxy announces ``contract``."""
    assert network.client is not None
    links = [d.connection for w in network.workers for d in w._dialers] + network.client.links()
    return all(
        link is not None and not link.closed and link.peer.info["chain"]["proxy_contract"] == contract
        for link in links
    )


async def _contract_when_linked(network: LocalNetwork) -> ClientAccount:
    """The client's contract as the app asks for it, once a proxy link is up (links come and go)."""
    assert network.client is not None
    async with asyncio.timeout(20):
        while True:
            try:
                return await network.client.contract()
            except ClientChainError:
                await asyncio.sleep(0.05)


async def test_a_params_change_moves_everyone_to_new_contracts_and_conserves_money(tmp_path: Path) -> None:
    async with _network(tmp_path, lambda _i: ScriptedEngine(Script(chunks=3))) as network:
        proxy, client, handles, chain = network.proxy, network.client, network.handles, network.chain
        assert proxy and client and handles and isinstance(chain, LocalChain) and proxy.chain_sync
        await _ask(network, 3)
        old_sync = proxy.chain_sync
        assert old_sync.proxy_address is not None and proxy.ledger is not None
        old_proxy = old_sync.proxy_address.to_str()  # type: ignore[no-untyped-call]
        (billed,) = proxy.ledger.clients()
        held_by_client = await read_client_state(chain, addr(billed.contract))
        client_wallet = _wallet(chain, tmp_path / "client" / "wallet.key")
        worker_wallet = _wallet(chain, tmp_path / "worker-0" / "wallet.key")
        client_before, worker_before = await client_wallet.balance(), await worker_wallet.balance()
        # The proxy wallet needs the new contract's stake (it got the old one's back only at close).
        await handles.funded_wallet(old_sync.wallet_key, 2 * handles.config.params.min_proxy_stake + 10 * TON)

        # The root's owner changes prices: a new params version.
        await _change_price(handles, NEW_PRICE)

        async def moved() -> bool:
            return proxy.upgrade.moves == 1

        await _eventually(moved, "the proxy to move to new contracts")
        new_sync = proxy.chain_sync
        assert new_sync is not old_sync and new_sync.proxy_address is not None
        new_proxy = new_sync.proxy_address.to_str()  # type: ignore[no-untyped-call]
        assert new_proxy != old_proxy and new_sync.params.price_per_token == NEW_PRICE
        # The old contract is closing; its client was charged in full and refunded, its worker paid.
        (old_client,) = old_sync.ledger.sync.clients()
        (old_worker,) = old_sync.ledger.sync.workers()
        assert old_client.tokens > 0 and old_worker.tokens > 0
        client_sc = await read_client_state(chain, addr(old_client.contract))
        assert client_sc.state == STATE_CLOSED and client_sc.tokens_used == old_client.tokens
        worker_sc = await read_worker_state(chain, addr(old_worker.contract))
        assert worker_sc.state == STATE_CLOSED and worker_sc.tokens == old_worker.tokens
        assert await worker_wallet.balance() - worker_before == old_worker.tokens * OLD_FEE
        # The client's wallet got back all it had not spent (less the contract's own gas).
        owed = (old_client.tokens - held_by_client.tokens_used) * old_client.price_per_token
        refund = await client_wallet.balance() - client_before
        assert held_by_client.balance - owed - 10**6 < refund <= held_by_client.balance - owed
        record = read_contracts(proxy.config.home)
        assert record["current"] != "proxy-ledger.sqlite"
        assert [c["proxy_contract"] for c in record["closing"]] == [old_proxy]

        # Workers and the client dial again and find the new contract in the proxy's hello.
        async def everyone_moved() -> bool:
            admitted = [link for link in proxy._worker_links.values() if not link.closed]
            return _linked_to(network, new_proxy) and len(admitted) == len(proxy.registry.records()) == 1

        await _eventually(everyone_moved, "workers and client to link to the new contract")
        account = await _contract_when_linked(network)  # the app's contract under the new proxy contract
        assert account.proxy.proxy_contract == new_sync.proxy_address
        await account.top_up(2 * TON)  # from the refund
        await client.query("balance")  # the proxy reads the new contract now (as auto top-up does)
        await _ask(network, 2)
        (new_client,) = proxy.ledger.clients()
        (new_worker,) = proxy.ledger.workers()
        assert new_client.price_per_token == NEW_PRICE and new_client.tokens > 0
        assert addr(new_client.contract) == account.address != addr(old_client.contract)
        assert addr(new_worker.contract) != addr(old_worker.contract) and new_worker.tokens > 0

        # The proxy restarts before the old contract's delay is over: it serves on the new contract's
        # books and resumes the old close; after the delay the close completes (fees and stake back).
        await proxy.stop()
        again = Proxy(proxy.config, chain=chain)
        await again.start()
        try:
            assert again.chain_sync is not None and again.ledger is not None
            assert again.chain_sync.proxy_address == new_sync.proxy_address
            assert [c.tokens for c in again.ledger.clients()] == [new_client.tokens]
            old_state = await read_proxy_state(chain, addr(old_proxy))
            holdings = old_state.balance + old_state.stake
            proxy_wallet = await again.chain_sync.wallet.balance()
            chain.advance(old_state.unlock_ts - await chain.now() + 1)

            async def old_closed() -> bool:
                report = again.upgrade.closing.get(old_proxy)
                return report is not None and report.closed

            await _eventually(old_closed, "the old contract's close complete")
            assert (await read_proxy_state(chain, addr(old_proxy))).state == STATE_CLOSED
            gained = await again.chain_sync.wallet.balance() - proxy_wallet
            assert holdings - TON // 10 < gained <= holdings
            assert read_contracts(proxy.config.home)["closing"] == []
            assert chain.totals().conserved
        finally:
            await again.stop()


async def test_a_params_change_while_the_proxy_was_stopped_moves_at_start(tmp_path: Path) -> None:
    async with _network(tmp_path, lambda _i: ScriptedEngine(Script(chunks=3))) as network:
        proxy, handles, chain = network.proxy, network.handles, network.chain
        assert proxy and handles and isinstance(chain, LocalChain) and proxy.chain_sync
        await _ask(network, 2)
        old_sync = proxy.chain_sync
        assert old_sync.proxy_address is not None and proxy.ledger is not None
        (old_client,) = proxy.ledger.clients()
        (old_worker,) = proxy.ledger.workers()
        await handles.funded_wallet(old_sync.wallet_key, 2 * handles.config.params.min_proxy_stake + 10 * TON)
        await proxy.stop()
        await _change_price(handles, NEW_PRICE)
        again = Proxy(proxy.config, chain=chain)  # started after the change: its store is the old contract's
        await again.start()
        try:

            async def moved() -> bool:
                return again.upgrade.moves == 1

            await _eventually(moved, "the restarted proxy to move to new contracts")
            assert again.chain_sync is not None and again.chain_sync.proxy_address != old_sync.proxy_address
            assert again.chain_sync.params.price_per_token == NEW_PRICE
            client_sc = await read_client_state(chain, addr(old_client.contract))
            assert client_sc.state == STATE_CLOSED and client_sc.tokens_used == old_client.tokens
            worker_sc = await read_worker_state(chain, addr(old_worker.contract))
            assert worker_sc.state == STATE_CLOSED and worker_sc.tokens == old_worker.tokens
            record = read_contracts(proxy.config.home)
            assert record["contract"] == again.chain_sync.proxy_address.to_str()  # type: ignore[no-untyped-call,union-attr]
            assert [c["proxy_contract"] for c in record["closing"]] == [
                old_sync.proxy_address.to_str()  # type: ignore[no-untyped-call]
            ]
            assert chain.totals().conserved
        finally:
            await again.stop()


async def test_an_answer_running_during_the_change_finishes_and_is_charged_on_the_old_contract(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine(Script(chunks=20, delay=0.05))  # about a second per answer
    async with _network(tmp_path, lambda _i: engine) as network:
        proxy, handles = network.proxy, network.handles
        assert proxy and handles and proxy.chain_sync
        old_sync = proxy.chain_sync
        await handles.funded_wallet(old_sync.wallet_key, 2 * handles.config.params.min_proxy_stake + 10 * TON)
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            running = asyncio.ensure_future(oai.chat.completions.create(**CHAT))

            async def answering() -> bool:
                return engine.stats.active == 1

            await _eventually(answering, "the answer to start")
            await _change_price(handles, NEW_PRICE)

            async def moving() -> bool:
                return proxy.upgrade.moving

            await _eventually(moving, "the move to begin")
            try:  # a request while the contracts are replaced is refused, before any work
                await oai.chat.completions.create(**CHAT)
                raise AssertionError("served while moving")
            except openai.APIStatusError as exc:
                assert exc.status_code == 503 and "moving to the contracts" in str(exc)
            answer = await running  # the running answer is not cut
            assert answer.choices and answer.usage is not None
        assert engine.stats.completed == 1

        async def moved() -> bool:
            return proxy.upgrade.moves == 1

        await _eventually(moved, "the move")
        (old_client,) = old_sync.ledger.sync.clients()
        chain = network.chain
        assert isinstance(chain, LocalChain)
        client_sc = await read_client_state(chain, addr(old_client.contract))
        # Its tokens were charged on the old contract with the final charge, then the rest refunded.
        assert client_sc.state == STATE_CLOSED and client_sc.tokens_used == old_client.tokens > 0
        assert old_client.requests == 1 and old_client.reserved_nano == 0


async def test_two_params_changes_in_a_row_close_both_old_contracts(tmp_path: Path) -> None:
    async with _network(tmp_path, lambda _i: ScriptedEngine(Script(chunks=2))) as network:
        proxy, client, handles, chain = network.proxy, network.client, network.handles, network.chain
        assert proxy and client and handles and isinstance(chain, LocalChain) and proxy.chain_sync
        await handles.funded_wallet(
            proxy.chain_sync.wallet_key, 3 * handles.config.params.min_proxy_stake + 10 * TON
        )
        contracts = []
        for moves, price in ((1, NEW_PRICE), (2, NEW_PRICE + 500)):
            await _ask(network, 1)
            assert proxy.chain_sync is not None and proxy.chain_sync.proxy_address is not None
            contracts.append(proxy.chain_sync.proxy_address)
            await _change_price(handles, price)

            async def moved(moves: int = moves) -> bool:
                return proxy.upgrade.moves == moves and _linked_to(network, _text(proxy))

            await _eventually(moved, f"move {moves}")
            account = await _contract_when_linked(network)
            await account.top_up(TON)
            await client.query("balance")
        await _ask(network, 1)
        assert proxy.chain_sync is not None and proxy.chain_sync.params.price_per_token == NEW_PRICE + 500
        for contract in contracts:
            state = await read_proxy_state(chain, contract)
            chain.advance(max(0, state.unlock_ts - await chain.now() + 1))

        async def all_closed() -> bool:
            return len(proxy.upgrade.closing) == 2 and all(r.closed for r in proxy.upgrade.closing.values())

        await _eventually(all_closed, "both old contracts to close")
        for contract in contracts:
            assert (await read_proxy_state(chain, contract)).state == STATE_CLOSED
        assert read_contracts(proxy.config.home)["closing"] == []
        assert chain.totals().conserved


def _text(proxy: Proxy) -> str:
    assert proxy.chain_sync is not None and proxy.chain_sync.proxy_address is not None
    return str(proxy.chain_sync.proxy_address.to_str())  # type: ignore[no-untyped-call]


async def test_a_move_short_of_the_new_stake_waits_with_the_reason_then_completes(tmp_path: Path) -> None:
    async with _network(tmp_path, lambda _i: ScriptedEngine(Script(chunks=2))) as network:
        proxy, handles, chain = network.proxy, network.handles, network.chain
        assert proxy and handles and isinstance(chain, LocalChain) and proxy.chain_sync
        await _ask(network, 1)
        stake = 200 * TON  # more than the proxy wallet holds
        terms = dataclasses.replace(handles.config.params, min_proxy_stake=stake)
        await send_root_op(handles.owner, handles.root, Op.CHANGE_PARAMS, params=terms)

        async def waiting() -> bool:
            return "cannot open the new proxy contract" in proxy.upgrade.why

        await _eventually(waiting, "the move to wait for funds")
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            try:
                await oai.chat.completions.create(**CHAT)
                raise AssertionError("served without a contract to bill on")
            except openai.APIStatusError as exc:  # refused before any work, saying what to do
                assert exc.status_code == 503 and "fund the proxy wallet" in str(exc)
        await handles.funded_wallet(proxy.chain_sync.wallet_key, stake + 10 * TON)

        async def moved() -> bool:
            return proxy.upgrade.moves == 1 and not proxy.upgrade.moving

        await _eventually(moved, "the move once the wallet is funded")
        assert proxy.chain_sync is not None and proxy.chain_sync.proxy_address is not None
        assert (await read_proxy_state(chain, proxy.chain_sync.proxy_address)).stake == stake
        assert chain.totals().conserved
