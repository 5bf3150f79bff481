from __future__ import annotations

import pytest
from pytoniq_core import Address

from cocoon.chain import network as net
from cocoon.chain.errors import TransactionFailed
from cocoon.chain.messages import (
    STATE_CLOSED,
    STATE_CLOSING,
    ExitCode,
    Op,
    parse_client_state,
    parse_proxy_state,
)
from cocoon.chain.payments import sign

TON = net.TON


async def client_state(world, addr):
    return parse_client_state((await world.chain.get_account(addr)).data)


async def proxy_state(world):
    return parse_proxy_state((await world.chain.get_account(world.proxy_sc)).data)


async def open_client(world, amount=10 * TON):
    return await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=amount
    )


def expect_exit(code):
    return pytest.raises(TransactionFailed, match=f"exit code {int(code)}")


async def test_client_charge_and_refusals(world):
    sc = await open_client(world)
    st = await client_state(world, sc)
    assert st.balance == 10 * TON and st.stake == world.params.min_client_stake and st.tokens_used == 0
    before = (await proxy_state(world)).balance

    charge = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=1000, query_id=1)
    await net.post_signed(world.client, charge)
    st = await client_state(world, sc)
    assert st.tokens_used == 1000
    assert st.balance == 10 * TON - 1000 * world.params.price_per_token
    assert (await proxy_state(world)).balance == before + 1000 * world.params.price_per_token

    with expect_exit(ExitCode.NOT_INCREASING):  # replay
        await net.post_signed(world.client, charge)
    lower = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=999, query_id=2)
    with expect_exit(ExitCode.NOT_INCREASING):
        await net.post_signed(world.client, lower)
    other = Address("0:" + "ab" * 32)
    wrong = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=other, counter=5000, query_id=3)
    wrong = type(wrong)(wrong.op, wrong.query_id, wrong.counter, other, wrong.signature)
    # post it to our contract anyway: the signature is genuine but names another contract
    from dataclasses import replace

    forged_target = replace(wrong, target=sc)
    with expect_exit(ExitCode.BAD_SIGNATURE):
        await net.post_signed(world.client, forged_target)
    from cocoon.chain.wallet import KeyPair

    forged = sign(KeyPair.generate(), Op.CLIENT_CHARGE_SIGNED, target=sc, counter=5000, query_id=4)
    with expect_exit(ExitCode.BAD_SIGNATURE):
        await net.post_signed(world.client, forged)
    assert (await client_state(world, sc)).tokens_used == 1000


async def test_wrong_contract_rejected(world):
    sc = await open_client(world)
    # A second client contract of another owner with the same proxy.
    other_owner = await world.wallet()
    sc2 = await net.open_client_contract(
        other_owner, world.proxy_sc, world.proxy_key.public, world.params, amount=5 * TON
    )
    msg = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc2, counter=10, query_id=1)
    # Re-address the envelope to sc: the signed cell still names sc2.
    trace = await world.client.transfer(sc, net.OP_VALUE, msg.body(world.client.address))
    with expect_exit(ExitCode.WRONG_CONTRACT):
        net.ensure_success(trace, sc)


async def test_withdraw_and_close(world):
    sc = await open_client(world, amount=3 * TON)
    with expect_exit(ExitCode.BELOW_STAKE):
        await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=2_500_000_000)
    bal = await world.client.balance()
    await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=TON)
    assert (await client_state(world, sc)).balance == 2 * TON
    assert await world.client.balance() > bal + TON - net.OP_VALUE

    stranger = await world.wallet()
    with expect_exit(ExitCode.NOT_OWNER):
        await net.send_client_op(stranger, sc, Op.CLIENT_WITHDRAW, amount=1)

    await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND)
    st = await client_state(world, sc)
    assert st.state == STATE_CLOSING
    with expect_exit(ExitCode.TOO_EARLY):
        await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND)
    with expect_exit(ExitCode.BAD_STATE):  # no withdraw while closing
        await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=1)
    # the proxy may still charge during the delay
    charge = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=100, query_id=9)
    await net.post_signed(world.client, charge)
    world.chain.advance(world.params.client_delay_before_close)
    bal = await world.client.balance()
    await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND)
    st = await client_state(world, sc)
    assert st.state == STATE_CLOSED and st.balance == 0
    assert await world.client.balance() > bal + 2 * TON - 100 * world.params.price_per_token - net.OP_VALUE
    with expect_exit(ExitCode.BAD_STATE):  # double close
        await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND)


async def test_grant_refund_closes_at_once(world):
    sc = await open_client(world, amount=4 * TON)
    grant = sign(world.proxy_key, Op.CLIENT_GRANT_REFUND_SIGNED, target=sc, counter=500, query_id=1)
    bal = await world.client.balance()
    await net.post_signed(world.client, grant)
    st = await client_state(world, sc)
    assert st.state == STATE_CLOSED and st.tokens_used == 500 and st.balance == 0
    assert await world.client.balance() > bal + 4 * TON - 500 * world.params.price_per_token - net.OP_VALUE
    with expect_exit(ExitCode.BAD_STATE):
        await net.post_signed(world.client, grant)


async def test_stake_increase(world):
    sc = await open_client(world, amount=5 * TON)
    await net.send_client_op(world.client, sc, Op.CLIENT_INCREASE_STAKE, amount=3 * TON)
    assert (await client_state(world, sc)).stake == 3 * TON
    with expect_exit(ExitCode.NOT_INCREASING):
        await net.send_client_op(world.client, sc, Op.CLIENT_INCREASE_STAKE, amount=2 * TON)
    with expect_exit(ExitCode.BELOW_STAKE):
        await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=2_500_000_000)
