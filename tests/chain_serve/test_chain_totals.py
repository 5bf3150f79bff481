"""Value conservation read while another connection commits (a served chain: the liteserver's
LocalChain writes the file the services' books read): totals are one instant, never a mix."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cocoon.chain import TON, KeyPair, LocalChain, Wallet, WalletClient
from cocoon.chain.localchain import FAUCET_ADDRESS, ValueTotals
from cocoon.chain.threaded import ThreadedLocalChain


async def test_totals_are_one_instant_while_another_connection_commits(tmp_path: Path) -> None:
    path = tmp_path / "local.sqlite"
    reader, writer = LocalChain(path), LocalChain(path)
    try:
        wallets = [WalletClient(writer, Wallet(KeyPair.generate())) for _ in range(3)]
        for w in wallets:
            await writer.faucet(w.address, 10 * TON)
        await wallets[0].transfer(wallets[1].address, TON)
        before = reader.totals()  # reads (and caches) every account
        assert before.conserved and before.minted == 30 * TON
        first = reader.addresses()[0]
        commits: list[str] = []

        def commit_while_reading(sql: str) -> None:
            """A trace committed on the other connection right when the reader starts on accounts."""
            if not commits and "FROM accounts" in sql:
                commits.append(sql)
                writer.inject_sync(FAUCET_ADDRESS, first, TON, bounce=False)

        reader._db.set_trace_callback(commit_while_reading)
        during = reader.totals()
        assert commits, "the interleaved commit did not happen"
        assert during.conserved and during.minted in (30 * TON, 31 * TON)
        reader._db.set_trace_callback(None)
        after = reader.totals()
        assert after.conserved and after.minted == 31 * TON
        assert after.balances == sum([(await reader.get_account(a)).balance for a in reader.addresses()])
    finally:
        reader.close()
        writer.close()


async def test_totals_hold_while_group_commits_land(tmp_path: Path) -> None:
    """The services' threaded chain commits groups on its thread; a second connection (as a test's
    or the CLI's view of the same file) and the threaded chain itself read totals meanwhile."""
    path = tmp_path / "local.sqlite"
    chain = ThreadedLocalChain(path)
    reader = LocalChain(path)
    try:
        senders = [Wallet(KeyPair.generate()) for _ in range(6)]
        await asyncio.gather(*(chain.faucet(w.address, 10 * TON) for w in senders))
        receiver = Wallet(KeyPair.generate()).address
        clients = [WalletClient(chain, w) for w in senders]
        seen: list[ValueTotals] = []

        async def read_meanwhile(sends: asyncio.Future[object]) -> None:
            while not sends.done():
                seen.append(reader.totals())
                seen.append(await chain.totals())
                await asyncio.sleep(0)

        for _ in range(3):
            sends = asyncio.ensure_future(
                asyncio.gather(*(c.transfer(receiver, TON // 10, bounce=False) for c in clients))
            )
            await asyncio.gather(sends, read_meanwhile(sends))
        assert seen and all(t.conserved for t in seen)
        assert len({t.balances for t in seen}) > 1  # some reads came between commits
        assert reader.totals() == await chain.totals()
    finally:
        reader.close()
        await chain.aclose()
