"""Worker collateral on the real TVM: stake, slash claims bounded by the root, disputes, execution, close."""

from __future__ import annotations

import pytest
from pytoniq_core import Address

from cocoon.chain import (
    Collateral,
    MessageError,
    Op,
    dispute_slash,
    execute_slash,
    parse_worker_state,
    sign,
    sign_slash_claim,
    sign_slash_receipt,
    stake_refusal,
    stake_worker,
)
from cocoon.chain import network as net
from cocoon.chain.errors import TransactionFailed
from cocoon.chain.messages import STATE_CLOSED, ExitCode
from cocoon.chain.slashing import slash_execute_body, stake_worker_body

TON = net.TON
EVIDENCE = b"\xee" * 32
WALLET_GAS = 1_000_000  # what a wallet pays to take in one message (0.001 TON is well above it)


def expect_exit(code):
    return pytest.raises(TransactionFailed, match=f"exit code {int(code)}")


async def worker_state(world, wc):
    return parse_worker_state((await world.chain.get_account(wc.address)).data)


async def set_collateral(world, **kw):
    await net.send_root_op(world.owner, world.root, Op.SET_COLLATERAL, collateral=Collateral(**kw))


def contract(world, key=None):
    return net.worker_contract(
        world.worker.address, world.proxy_sc, (key or world.proxy_key).public, world.params
    )


async def test_stake_claim_execute_pays_the_root_owner_never_the_proxy(world):
    await set_collateral(world, min_worker_stake=2 * TON, dispute_window_s=600, max_slash_permille=500)
    wc = contract(world)
    await stake_worker(world.worker, wc, 3 * TON)
    st = await worker_state(world, wc)
    assert st.stake == 3 * TON and st.pending_slash is None
    acc = await world.chain.get_account(wc.address)
    assert acc.balance >= 3 * TON  # the stake is on the contract, gas came from the message
    assert stake_refusal(st, (await net.fetch_root_config(world.chain, world.root)).collateral) is None

    owner_before = await world.owner.balance()
    proxy_owner_before = await world.proxy_owner.balance()
    claim = sign_slash_claim(world.proxy_key, wc.address, amount=5 * TON, evidence_hash=EVIDENCE, counter=1)
    await net.post_signed(world.proxy_owner, claim)
    st = await worker_state(world, wc)
    p = st.pending_slash
    assert p is not None and p.open and p.evidence_hash == EVIDENCE
    assert p.amount == 1_500_000_000  # bounded by the root: 500 ‰ of 3 TON
    assert p.deadline == await world.chain.now() + 600
    assert p.slash_to == world.owner.address
    with expect_exit(ExitCode.TOO_EARLY):
        await execute_slash(world.client, wc.address)
    world.chain.advance(600)
    await execute_slash(world.client, wc.address)
    st = await worker_state(world, wc)
    assert st.stake == 1_500_000_000 and st.slashed == 1_500_000_000 and st.pending_slash is None
    # the root owner's wallet got the slash, less its own gas for taking the message in
    assert 1_500_000_000 - WALLET_GAS < await world.owner.balance() - owner_before <= 1_500_000_000
    # the proxy's wallet only paid gas for posting the claim
    assert await world.proxy_owner.balance() < proxy_owner_before
    with expect_exit(ExitCode.NOT_FOUND):  # nothing pending any more
        await execute_slash(world.client, wc.address)


async def test_dispute_with_the_proxys_receipt_voids_the_slash(world):
    await set_collateral(world, dispute_window_s=600, max_slash_permille=1000)
    wc = contract(world)
    await stake_worker(world.worker, wc, 2 * TON)
    claim = sign_slash_claim(world.proxy_key, wc.address, amount=TON, evidence_hash=EVIDENCE, counter=7)
    await net.post_signed(world.proxy_owner, claim)
    other = sign_slash_receipt(world.proxy_key, wc.address, evidence_hash=b"\x01" * 32, tokens=10)
    with expect_exit(ExitCode.NO_RECEIPT_MATCH):
        await dispute_slash(world.worker, wc.address, other)
    rogue = type(world.proxy_key).generate()
    forged = sign_slash_receipt(rogue, wc.address, evidence_hash=EVIDENCE)
    with expect_exit(ExitCode.BAD_SIGNATURE):
        await dispute_slash(world.worker, wc.address, forged)
    receipt = sign_slash_receipt(world.proxy_key, wc.address, evidence_hash=EVIDENCE, tokens=42)
    receipt.verify(world.proxy_key.public)
    with expect_exit(ExitCode.NOT_OWNER):  # only the worker owner disputes
        await dispute_slash(world.client, wc.address, receipt)
    await dispute_slash(world.worker, wc.address, receipt)
    st = await worker_state(world, wc)
    assert st.pending_slash is None and st.stake == 2 * TON and st.slashed == 0
    world.chain.advance(601)
    with expect_exit(ExitCode.NOT_FOUND):
        await execute_slash(world.client, wc.address)
    # the counter was used: the same claim cannot come back
    with expect_exit(ExitCode.NOT_INCREASING):
        await net.post_signed(world.proxy_owner, claim)


async def test_dispute_after_the_window_is_refused(world):
    await set_collateral(world, dispute_window_s=60)
    wc = contract(world)
    await stake_worker(world.worker, wc, TON)
    await net.post_signed(
        world.proxy_owner,
        sign_slash_claim(world.proxy_key, wc.address, amount=TON, evidence_hash=EVIDENCE, counter=1),
    )
    world.chain.advance(60)
    receipt = sign_slash_receipt(world.proxy_key, wc.address, evidence_hash=EVIDENCE)
    with expect_exit(ExitCode.BAD_STATE):
        await dispute_slash(world.worker, wc.address, receipt)


async def test_claims_refused_without_stake_forged_or_while_one_is_open(world):
    wc = contract(world)
    no_stake = sign_slash_claim(world.proxy_key, wc.address, amount=TON, evidence_hash=EVIDENCE, counter=1)
    await stake_worker(world.worker, wc, TON)
    rogue = type(world.proxy_key).generate()
    forged = sign_slash_claim(rogue, wc.address, amount=TON, evidence_hash=EVIDENCE, counter=1)
    with expect_exit(ExitCode.BAD_SIGNATURE):
        await net.post_signed(world.proxy_owner, forged)
    await net.post_signed(world.proxy_owner, no_stake)
    second = sign_slash_claim(world.proxy_key, wc.address, amount=TON, evidence_hash=b"\x02" * 32, counter=2)
    with expect_exit(ExitCode.BAD_STATE):  # one slash at a time
        await net.post_signed(world.proxy_owner, second)
    with expect_exit(ExitCode.NOT_OWNER):  # only the owner stakes
        body = stake_worker_body(TON, excess=world.client.address)
        net.ensure_success(await world.client.transfer(wc.address, 2 * TON, body), wc.address)
    with pytest.raises(MessageError):
        sign_slash_claim(world.proxy_key, wc.address, amount=0, evidence_hash=EVIDENCE, counter=3)


async def test_payouts_never_touch_the_stake_and_close_returns_it(world):
    await set_collateral(world, dispute_window_s=100, max_slash_permille=250)
    wc = contract(world)
    await stake_worker(world.worker, wc, 4 * TON)
    await net.post_signed(
        world.proxy_owner, sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=600)
    )
    st = await worker_state(world, wc)
    assert st.tokens == 600 and st.stake == 4 * TON
    assert (await world.chain.get_account(wc.address)).balance >= 4 * TON
    await net.post_signed(
        world.proxy_owner,
        sign_slash_claim(world.proxy_key, wc.address, amount=4 * TON, evidence_hash=EVIDENCE, counter=1),
    )
    before = await world.worker.balance()
    last = sign(world.proxy_key, Op.WORKER_LAST_PAYOUT_SIGNED, target=wc.address, counter=700)
    await net.post_signed(world.proxy_owner, last)
    st = await worker_state(world, wc)
    assert st.state == STATE_CLOSED and st.stake == TON  # the pending slash holds its bound, 250 ‰
    fee = world.params.worker_fee_per_token
    gain = await world.worker.balance() - before
    assert 3 * TON + 100 * fee - 2 * WALLET_GAS < gain <= 3 * TON + 100 * fee
    world.chain.advance(100)
    await execute_slash(world.client, wc.address)
    st = await worker_state(world, wc)
    assert st.stake == 0 and st.slashed == TON
    with expect_exit(ExitCode.BAD_STATE):  # closed: no more stake
        await stake_worker(world.worker, wc, TON)


async def test_stake_refusal_reasons():
    col = Collateral(min_worker_stake=10)
    assert stake_refusal(None, Collateral()) is None
    assert "holds no stake" in (stake_refusal(None, col) or "")


def test_execute_body_is_strict():
    from cocoon.chain import decode_body

    body = slash_execute_body(excess=Address("0:" + "11" * 32), query_id=3)
    d = decode_body(body)
    assert d.op == Op.WORKER_SLASH_EXECUTE and d.query_id == 3


def test_every_collateral_message_decodes():
    from cocoon.chain import decode_body
    from cocoon.chain._ton import begin_cell
    from cocoon.chain.slashing import slash_dispute_body

    a = Address("0:" + "22" * 32)
    receipt = sign_slash_receipt(type_key(), a, evidence_hash=EVIDENCE, tokens=5)
    assert decode_body(slash_dispute_body(receipt, excess=a)).fields["receipt"].hash == receipt.cell.hash
    assert decode_body(stake_worker_body(7, excess=a)).fields["amount"] == 7
    claim = sign_slash_claim(type_key(), a, amount=9, evidence_hash=EVIDENCE, counter=2)
    assert decode_body(claim.body(a)).op == Op.WORKER_SLASH_CLAIM_SIGNED
    terms = begin_cell().store_uint(Op.SLASH_TERMS, 32).store_uint(1, 64).store_address(a).store_address(a)
    f = decode_body(terms.store_uint(60, 32).store_uint(500, 16).end_cell()).fields
    assert (f["dispute_window_s"], f["max_slash_permille"]) == (60, 500)
    excesses = begin_cell().store_uint(Op.EXCESSES, 32).store_uint(3, 64).end_cell()
    assert decode_body(excesses).query_id == 3


def type_key():
    from cocoon.chain import KeyPair

    return KeyPair.from_seed(b"\x05" * 32)


async def test_owner_closes_alone_after_the_notice_a_claim_in_it_still_counts(world):
    """The proxy vanished without a last payout: the owner gets the stake back after the notice."""
    from cocoon.chain import complete_worker_close, request_worker_close
    from cocoon.chain.messages import STATE_CLOSING

    await set_collateral(world, dispute_window_s=50, max_slash_permille=500)
    wc = contract(world)
    await stake_worker(world.worker, wc, 2 * TON)
    with expect_exit(ExitCode.NOT_OWNER):
        await request_worker_close(world.client, wc.address)
    await request_worker_close(world.worker, wc.address)
    st = await worker_state(world, wc)
    assert (
        st.state == STATE_CLOSING
        and st.unlock_ts == await world.chain.now() + world.params.proxy_delay_before_close
    )
    assert stake_refusal(st, Collateral(min_worker_stake=1)) == "the worker contract is closing or closed"
    with expect_exit(ExitCode.BAD_STATE):  # no new stake while closing
        await stake_worker(world.worker, wc, TON)
    # the notice is for the proxy: a claim and a payout still come in
    claim = sign_slash_claim(world.proxy_key, wc.address, amount=TON, evidence_hash=EVIDENCE, counter=1)
    await net.post_signed(world.proxy_owner, claim)
    await net.post_signed(
        world.proxy_owner, sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=5)
    )
    with expect_exit(ExitCode.TOO_EARLY):
        await complete_worker_close(world.worker, wc.address)
    world.chain.advance(world.params.proxy_delay_before_close)
    before = await world.worker.balance()
    await complete_worker_close(world.worker, wc.address)
    st = await worker_state(world, wc)
    # closed; the pending slash holds its part (500 ‰ of 2 TON)
    assert st.state == STATE_CLOSED and st.stake == TON and st.pending_slash is not None
    # the stake came back, less the gas of the owner's own post (well under 0.05 TON)
    assert TON - 50_000_000 < await world.worker.balance() - before <= TON
    await execute_slash(world.client, wc.address)
    st = await worker_state(world, wc)
    assert st.stake == 0 and st.slashed == TON
