"""The proxy's side of the statement check: at every connect a worker reports the signed statement
it holds, and the proxy compares it with its own books — a statement above what its books billed
means the proxy's books lost writes, one it never signed means the worker claims too much. Either
way the proxy alerts and refuses that link; an honest report passes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from cocoon.chain import TON, KeyPair, LocalChain, Op, sign
from cocoon.chain import parse_address as addr
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.statements import Statement, statement_params
from cocoon.proxy import Proxy
from cocoon.proxy.ledger import WorkerTotals
from cocoon.worker import Worker

CHAT: dict[str, Any] = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
NO_PAYOUTS = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 10**18,
    "min_idle_worker_payout_nano": 10**18,
}


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - links and stores change on the nodes' own tasks
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _network_with_held_statement(home: Path) -> tuple[LocalNetwork, Proxy, Worker, Statement]:
    config = LocalNetworkConfig.ephemeral(
        home, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=NO_PAYOUTS
    )
    network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=3)))
    await network.start()
    async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
        for _ in range(2):
            await oai.chat.completions.create(**CHAT)
    proxy, worker = network.proxy, network.workers[0]
    assert proxy is not None and proxy.ledger is not None

    def holds_all() -> bool:
        (totals,) = proxy.ledger.workers()  # type: ignore[union-attr]
        held = list(worker.statements.store.load().values())
        return bool(held and held[0].counter == totals.committed_tokens == totals.tokens > 0)

    await _eventually(holds_all, "the worker to hold a statement for everything billed")
    (held,) = worker.statements.store.load().values()
    return network, proxy, worker, held


async def _reconnect(proxy: Proxy) -> None:
    (link,) = list(proxy._worker_links.values())
    await link.aclose("reconnect")  # the worker dials again and reports what it holds


async def test_an_honest_report_passes_and_the_worker_serves_on(tmp_path: Path) -> None:
    network, proxy, worker, held = await _network_with_held_statement(tmp_path)
    try:
        assert proxy.chain_sync is not None
        old = next(iter(proxy._worker_links.values()))
        await _reconnect(proxy)
        await _eventually(
            lambda: any(link is not old for link in proxy._worker_links.values()), "the worker to rejoin"
        )
        assert worker.statements.held_for(held.proxy_contract) == held  # what it reported
        assert proxy.chain_sync.stats.alerts == [] and worker.statements.alerts == []
        assert len(proxy.registry.records()) == 1
    finally:
        await network.stop()


async def test_a_proxy_whose_books_lost_writes_alerts_and_refuses_the_worker(tmp_path: Path) -> None:
    network, proxy, worker, held = await _network_with_held_statement(tmp_path)
    try:
        assert proxy.books is not None and proxy.chain_sync is not None
        books = proxy.books
        honest = books.worker_totals

        async def lost_writes(worker: str) -> WorkerTotals:
            # The proxy's own store, as if the last request had never been written.
            totals = await honest(worker)
            return dataclasses.replace(totals, tokens=held.counter - 1, committed_tokens=held.counter - 1)

        books.worker_totals = lost_writes  # type: ignore[method-assign]
        await _reconnect(proxy)
        await _eventually(lambda: bool(proxy.chain_sync and proxy.chain_sync.stats.alerts), "the alert")
        assert "rolled back" in proxy.chain_sync.stats.alerts[0]
        assert f"{held.counter} tokens" in proxy.chain_sync.stats.alerts[0]
        assert "rolled back" in proxy.chain_sync.statistics()["alerts"][0]  # shown to the operator
        # The worker is told, raises its own alert and refuses the proxy; it is never chosen.
        await _eventually(lambda: bool(worker.statements.alerts), "the worker's alert")
        assert not proxy.registry.records()
        (kept,) = worker.statements.store.load().values()
        assert kept.counter == held.counter  # what it holds is untouched
    finally:
        await network.stop()


async def test_a_worker_claiming_what_the_proxy_never_signed_is_refused(tmp_path: Path) -> None:
    network, proxy, worker, held = await _network_with_held_statement(tmp_path)
    try:
        assert proxy.chain_sync is not None
        chain = network.chain
        assert isinstance(chain, LocalChain)
        # A hostile worker: a real Worker whose store holds a statement for a billion tokens, signed
        # by a key of its own under the proxy contract's name (its store takes any signed statement).
        forger = KeyPair.generate()
        forged = sign(forger, Op.WORKER_PAYOUT_SIGNED, target=held.message.target, counter=10**9)
        params = statement_params(
            proxy_contract=held.proxy_contract, signing_key=forger.public, message=forged
        )
        assert worker.statements.store.record(Statement.from_params(params))
        await _reconnect(proxy)
        await _eventually(lambda: bool(proxy.chain_sync and proxy.chain_sync.stats.alerts), "the alert")
        assert "not signed by this proxy" in proxy.chain_sync.stats.alerts[0]
        assert not proxy.registry.records()
        # Nothing was paid for the claim: the worker contract was never even deployed by it.
        (totals,) = proxy.ledger.workers()  # type: ignore[union-attr]
        assert totals.tokens == held.counter and totals.paid_tokens == 0
        assert not (await chain.get_account(addr(totals.contract))).active
    finally:
        await network.stop()
