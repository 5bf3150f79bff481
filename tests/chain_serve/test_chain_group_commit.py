"""Group commit on the embedded chain: traces that queue up share one SQLite transaction and one disk
sync; each still succeeds or fails on its own, and nothing is answered before the commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon.chain import TON, ChainError, KeyPair, LocalChain, Wallet, WalletClient
from cocoon.chain.threaded import ThreadedLocalChain


def _wallets(n: int) -> list[Wallet]:
    return [Wallet(KeyPair.generate()) for _ in range(n)]


async def test_a_group_commits_every_trace_once_and_a_failed_one_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    a, b, broke = _wallets(3)
    async with LocalChain(path) as chain:
        with chain.group():
            await chain.faucet(a.address, 5 * TON)
            count = chain.transaction_count()
            with pytest.raises(ChainError):  # an unfunded wallet's message is not accepted: refused alone
                await WalletClient(chain, broke).transfer(a.address, TON)
            assert chain.transaction_count() == count
            await chain.faucet(b.address, 7 * TON)
            with pytest.raises(ChainError, match="nest"), chain.group():
                pass
        minted = chain.minted
    async with LocalChain(path) as reopened:  # what the group wrote reached the store
        assert reopened.minted == minted == 12 * TON
        assert (await reopened.get_account(b.address)).balance == 7 * TON


async def test_an_error_out_of_the_group_rolls_back_all_of_it(tmp_path: Path) -> None:
    (a,) = _wallets(1)
    async with LocalChain(tmp_path / "chain.sqlite") as chain:
        with pytest.raises(RuntimeError), chain.group():
            await chain.faucet(a.address, 5 * TON)
            raise RuntimeError("the caller gave up before the commit")
        assert chain.minted == 0 and (await chain.get_account(a.address)).balance == 0
        await chain.faucet(a.address, TON)  # and the chain goes on
        assert chain.minted == TON


async def test_concurrent_senders_share_group_commits_and_get_their_own_traces(tmp_path: Path) -> None:
    chain = ThreadedLocalChain(tmp_path / "chain.sqlite")
    try:
        senders = _wallets(8)
        await asyncio.gather(*(chain.faucet(w.address, 10 * TON) for w in senders))
        receiver = Wallet(KeyPair.generate()).address
        clients = [WalletClient(chain, w) for w in senders]
        before = chain.groups
        traces = await asyncio.gather(*(c.transfer(receiver, TON, bounce=False) for c in clients))
        assert all(t and t[0].success for t in traces)
        assert chain.groups - before < len(senders)  # fewer commits than traces
        assert (await chain.get_account(receiver)).balance > 7 * TON
        refused = await asyncio.gather(
            chain.faucet(receiver, 0), chain.faucet(receiver, TON), return_exceptions=True
        )
        assert isinstance(refused[0], ChainError) and not isinstance(refused[1], BaseException)
    finally:
        await chain.aclose()
