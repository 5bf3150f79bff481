"""LocalChain reads transactions and accounts off the emulator's own cells (cocoon.chain._native):
every record and state must equal what pytoniq's parse of the stored bytes gives."""

from __future__ import annotations

import base64

import pytest
from pytoniq_core import Cell

from cocoon.chain import network as net
from cocoon.chain.api import TxRecord
from cocoon.chain.errors import TransactionFailed
from cocoon.chain.localchain import LocalChain, tx_record
from cocoon.chain.messages import Op
from cocoon.chain.payments import sign
from cocoon.chain.wallet import KeyPair, OutMsg, Wallet, WalletClient

from .conftest import TON, World


def _reference(record: TxRecord) -> TxRecord:
    return tx_record(record.address, Cell.one_from_boc(record.boc), boc=record.boc)


async def test_records_and_states_agree_with_pytoniq(world: World) -> None:
    chain = world.chain
    traces: list[list[TxRecord]] = []
    fresh = WalletClient(chain, Wallet(KeyPair.generate()))
    traces.append(await chain.faucet(fresh.address, 5 * TON))  # uninit wallet
    nobody = net.Address("0:" + "ab" * 32)
    # one external, three internal messages out (the out-message dict in key order), one bounces back
    traces.append(
        await fresh.send(
            [
                OutMsg(world.client.address, TON // 10, None, None, False),
                OutMsg(nobody, TON // 20, None, None, True),
                OutMsg(world.worker.address, TON // 30, None, None, True),
            ]
        )
    )
    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=3 * TON
    )
    traces.append(
        await net.post_signed(
            world.client, sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=10)
        )
    )
    with pytest.raises(TransactionFailed):
        await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=100 * TON)
    wc = net.worker_contract(world.worker.address, world.proxy_sc, world.proxy_key.public, world.params)
    pay = sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=10)
    traces.append(await net.post_signed(world.worker, pay, state_init=wc.state_init))  # deploys
    records = [r for trace in traces for r in trace]
    assert {r.out_msgs for r in records} >= {0, 1, 3} and any(r.bounced_in for r in records)
    for record in records:
        assert record == _reference(record)
    stored = chain._db.execute("SELECT address, boc FROM transactions").fetchall()
    for addr, boc in stored:  # the history reads its own BOCs back the same
        (got,) = [r for r in await chain.get_transactions(net.Address(addr), 1000) if r.boc == boc]
        assert got == _reference(got)
    for address in [*chain.addresses(), nobody, net.Address("0:" + "cd" * 32)]:
        native = await chain.get_account(address)
        b64 = base64.b64encode(chain.shard_account(address).to_boc()).decode()
        assert native == LocalChain._parse_state(address, b64)
