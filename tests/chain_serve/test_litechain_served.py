"""LiteChain (the same code that talks to TON) against `cocoon chain serve`'s server: every call the
services make, compared with the embedded chain read directly; the dev-chain guard both ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from cocoon.chain import (
    TON,
    ChainError,
    ChainSettings,
    GetMethodError,
    KeyPair,
    LocalChain,
    OutMsg,
    Wallet,
    WalletClient,
    open_chain,
)
from cocoon.chain.liteserver import write_global_config
from cocoon.chain.liteserver.globalconfig import liteserver_entry

from .conftest import Served


async def test_wallet_round_trip_over_the_liteserver(
    served: Served, local_view: Callable[[], LocalChain]
) -> None:
    dest = Wallet(KeyPair.generate()).address
    async with served.lite() as lite:
        sender = WalletClient(lite, served.wallet)
        assert (await lite.get_account(served.wallet.address)).status == "uninit"
        assert await sender.transfer(dest, 1 * TON, bounce=False) == []  # deploys the wallet too
        assert await sender.seqno() == 1  # the next read sees the new state at once
        await sender.transfer(dest, 1 * TON, bounce=False)
        assert (await lite.run_get_method(served.wallet.address, "seqno")) == [2]
        account = await lite.get_account(served.wallet.address)
        txs = await lite.get_transactions(served.wallet.address, 20)
        received = await lite.get_account(dest)
        missing = await lite.get_account(Wallet(KeyPair.generate()).address)
        with pytest.raises(GetMethodError):
            await lite.run_get_method(served.wallet.address, "no_such_method")
        with pytest.raises(GetMethodError):
            await lite.run_get_method(missing.address, "seqno")
    local = local_view()
    try:
        direct = await local.get_account(served.wallet.address)
        assert (account.balance, account.status, account.last_tx_lt) == (
            direct.balance,
            "active",
            direct.last_tx_lt,
        )
        assert account.code is not None and direct.code is not None and account.code.hash == direct.code.hash
        assert [t.hash for t in txs] == [
            t.hash for t in await local.get_transactions(served.wallet.address, 20)
        ]
        assert (
            len(txs) == 3 and txs[0].success and txs[0].value_out == 1 * TON and txs[-1].value_in == 50 * TON
        )
        assert received.balance == (await local.get_account(dest)).balance > 2 * TON - TON // 100
        assert missing.status == "nonexist" and missing.balance == 0
    finally:
        local.close()


async def test_the_queries_a_litechain_issues(served: Served) -> None:
    """What a LiteChain asks on start-up and per call (the server's log of queries)."""
    server = served.servers[0]
    async with served.lite() as lite:
        await lite.get_account(served.wallet.address)
        # pytoniq's client also waits for the next block in the background (a long-poll)
        waits = server.queries.pop("waitMasterchainSeqno+getMasterchainInfo", 0)
        assert server.queries == {
            "getMasterchainInfo": 1,
            "getAllShardsInfo": 1,
            "getVersion": 1,
            "getAccountState": 1,
        }
        assert waits <= 1
        await lite.get_transactions(served.wallet.address, 5)  # the account (for its last lt), then the list
        assert server.queries["getAccountState"] == 2 and server.queries["getTransactions"] == 1


async def test_an_external_message_the_chain_refuses_is_an_error(served: Served) -> None:
    async with served.lite() as lite:
        dest = Wallet(KeyPair.generate()).address
        stale = served.wallet.transfer_message(7, [OutMsg(dest, TON)], valid_until=2**32 - 1, with_init=True)
        with pytest.raises(ChainError, match="refused"):
            await lite.send_external(stale)
        assert (await lite.get_account(served.wallet.address)).status == "uninit"  # nothing happened


async def test_dev_chain_must_be_named_and_is_only_for_dev_servers(served: Served) -> None:
    with pytest.raises(ChainError, match="set dev_chain = true"):
        async with served.lite(dev_chain=False) as lite:
            await lite.get_account(served.wallet.address)
    with pytest.raises(ValidationError, match="kind = 'lite'"):
        ChainSettings(local_path=served.path, dev_chain=True)
    with pytest.raises(ValidationError, match="trust_level 2"):
        ChainSettings(kind="lite", config_path=served.path, dev_chain=True, trust_level=1)


async def test_global_config_opens_through_chain_settings(served: Served, tmp_path: Path) -> None:
    config = tmp_path / "global.config.json"
    write_global_config(config, liteserver_entry("127.0.0.1", served.servers[0].port, served.key.public))
    second = await served.add_server()
    write_global_config(config, liteserver_entry("127.0.0.1", second.port, served.key.public))  # merged
    chain = open_chain(ChainSettings(kind="lite", config_path=config, dev_chain=True))
    try:
        assert (await chain.get_account(served.wallet.address)).balance == 50 * TON
    finally:
        await chain.aclose()
    listed = {s["port"] for s in json.loads(config.read_text())["liteservers"]}
    assert listed == {served.servers[0].port, second.port}
