"""Whole histories of a worker contract on the real TVM (stakes, payouts, slash claims, disputes,
executions, closes, forged claims and time in random order) against a model of the rules:

* the contract's state equals the model after every step (refusals change nothing);
* the stake never pays a fee: the contract holds the stake plus at most the storage reserve;
* a slash never exceeds ``max_slash_permille`` of the stake nor the stake, a voided slash pays
  nothing, and what executed slashes pay is exactly what the root owner receives (the proxy nothing);
* the chain conserves value: balances + fees = minted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytoniq_core import begin_cell

from cocoon.chain import (
    Collateral,
    KeyPair,
    LocalChain,
    Op,
    Wallet,
    WalletClient,
    parse_worker_state,
    sign,
    sign_slash_claim,
    sign_slash_receipt,
)
from cocoon.chain import network as net
from cocoon.chain.messages import STATE_ACTIVE, STATE_CLOSED, STATE_CLOSING
from cocoon.chain.slashing import slash_dispute_body, slash_execute_body, stake_worker_body

TON = net.TON
FEE = 500  # worker fee per token
STORAGE_RESERVE = 10_000_000  # contracts/common.tolk
EVIDENCE = (b"\x0a" * 32, b"\x0b" * 32)


@dataclass
class Model:
    """What the worker contract must hold after each step."""

    state: int = STATE_ACTIVE
    tokens: int = 0
    stake: int = 0
    slashed: int = 0
    counter: int = 0
    pending: tuple[int, bytes, int] | None = None  # amount, evidence, deadline
    unlock: int = 0  # the owner's own close completes from then on
    paid_to_root_owner: int = 0
    returned_to_owner: int = 0


class Env:
    """One chain and proxy for all examples; each example gets a fresh worker owner and contract."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.chain = LocalChain()
        self.key = KeyPair.generate()
        self.rogue = KeyPair.generate()
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        h = await net.bootstrap_local_network(
            self.chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[],
            worker_image_hashes=[],
            models={},
            proxy_addresses=[],
            params=net.default_params(
                price_per_token=FEE * 2, worker_fee_per_token=FEE, proxy_delay_before_close=100
            ),
        )
        self.h = h
        self.params = h.config.params
        self.poster = WalletClient(self.chain, Wallet(KeyPair.generate()))  # the proxy's wallet
        await self.chain.faucet(self.poster.address, 10_000 * TON)
        proxy_owner = WalletClient(self.chain, Wallet(KeyPair.generate()))
        await self.chain.faucet(proxy_owner.address, 200 * TON)
        self.proxy_sc = await net.open_proxy_contract(
            proxy_owner, self.key.public, h.root, self.params, stake=100 * TON
        )

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.chain.close()
        self.loop.close()


STEPS = {
    "stake": st.tuples(st.just("stake"), st.integers(1, 5 * TON)),
    "payout": st.tuples(st.just("payout"), st.integers(0, 2000)),
    "claim": st.tuples(
        st.just("claim"), st.integers(1, 6 * TON), st.sampled_from(EVIDENCE), st.integers(0, 2)
    ),
    "forged": st.tuples(st.just("forged"), st.integers(1, TON)),
    "dispute": st.tuples(st.just("dispute"), st.sampled_from(EVIDENCE)),
    "execute": st.tuples(st.just("execute")),
    "close": st.tuples(st.just("close"), st.integers(0, 500)),
    "request": st.tuples(st.just("request")),
    "complete": st.tuples(st.just("complete"), st.sampled_from([0, 150])),  # after that many seconds
    "wait": st.tuples(st.just("wait"), st.sampled_from([1, 30, 120, 1000])),
}
# Closing ends a history early: drawn less often than the steps that exercise a slash.
KINDS = ["claim"] * 3 + ["wait"] * 3 + ["execute"] * 2 + ["dispute"] * 2
KINDS += ["stake", "payout", "forged", "close", "request", "complete", "complete"]
ops = st.sampled_from(KINDS).flatmap(STEPS.__getitem__)


class History:
    def __init__(self, env: Env, collateral: Collateral) -> None:
        self.env = env
        self.col = collateral
        self.m = Model()
        self.root_owner_in = 0  # PAYOUT messages the root owner's wallet took in
        self.owner_in = 0  # PAYOUT messages the worker owner's wallet took in

    async def start(self) -> None:
        env = self.env
        await net.send_root_op(env.h.owner, env.h.root, Op.SET_COLLATERAL, collateral=self.col)
        self.owner = WalletClient(env.chain, Wallet(KeyPair.generate()))
        await env.chain.faucet(self.owner.address, 100 * TON)
        self.wc = net.worker_contract(self.owner.address, env.proxy_sc, env.key.public, env.params)

    def expect(self, op: tuple) -> tuple[bool, Model]:  # type: ignore[type-arg]
        """Whether ``op`` must succeed, and the model after it (the contract's rules, in Python)."""
        m, now = self.m, self.env.chain.now_sync()
        active, open_ = m.state == STATE_ACTIVE, m.state != STATE_CLOSED
        kind = op[0]
        if kind == "stake":
            return active, replace(m, stake=m.stake + op[1])
        if kind == "payout":
            return open_ and op[1] > 0, replace(m, tokens=m.tokens + op[1])
        if kind in ("close", "complete"):
            held = 0 if m.pending is None else min(m.pending[0], m.stake)
            tokens = m.tokens + op[1] if kind == "close" else m.tokens
            after = replace(m, state=STATE_CLOSED, tokens=tokens, stake=held)
            ok = open_ if kind == "close" else m.state == STATE_CLOSING and now >= m.unlock
            return ok, replace(after, returned_to_owner=m.returned_to_owner + m.stake - held)
        if kind == "request":
            delay = self.env.params.proxy_delay_before_close
            return active, replace(m, state=STATE_CLOSING, unlock=now + delay)
        if kind == "claim":
            _, amount, evidence, step = op
            open_slash = m.pending is not None
            ok = open_ and step > 0 and m.stake > 0 and not open_slash
            bound = min(amount, self.col.slash_bound(m.stake))  # the pending amount is the bound
            return ok, replace(
                m, counter=m.counter + step, pending=(bound, evidence, now + self.col.dispute_window_s)
            )
        if kind == "forged":
            return False, m
        if kind == "dispute":
            ok = m.pending is not None and now < m.pending[2] and op[1] == m.pending[1]
            return ok, self._released(replace(m, pending=None))
        if kind == "execute":
            if m.pending is None or now < m.pending[2]:
                return False, m
            amount = min(m.pending[0], m.stake)
            after = replace(m, stake=m.stake - amount, slashed=m.slashed + amount, pending=None)
            return True, self._released(replace(after, paid_to_root_owner=m.paid_to_root_owner + amount))
        return True, m  # wait

    @staticmethod
    def _released(m: Model) -> Model:
        if m.state != STATE_CLOSED:
            return m
        return replace(m, stake=0, returned_to_owner=m.returned_to_owner + m.stake)

    def body(self, op: tuple):  # type: ignore[no-untyped-def,type-arg]
        env, m, target = self.env, self.m, self.wc.address
        kind = op[0]
        if kind == "stake":
            return self.owner, op[1] + net.OP_VALUE, stake_worker_body(op[1], excess=self.owner.address)
        if kind in ("payout", "close"):
            o = Op.WORKER_PAYOUT_SIGNED if kind == "payout" else Op.WORKER_LAST_PAYOUT_SIGNED
            return env.poster, net.OP_VALUE, sign(env.key, o, target=target, counter=m.tokens + op[1]).body()
        if kind in ("claim", "forged"):
            key = env.key if kind == "claim" else env.rogue
            counter = m.counter + (op[3] if kind == "claim" else 1)
            claim = sign_slash_claim(
                key,
                target,
                amount=op[1],
                evidence_hash=EVIDENCE[0] if kind == "forged" else op[2],
                counter=counter,
            )
            return env.poster, net.OP_VALUE, claim.body(env.poster.address)
        if kind in ("request", "complete"):
            o = Op.WORKER_CLOSE_REQUEST if kind == "request" else Op.WORKER_CLOSE_COMPLETE
            body = begin_cell().store_uint(o, 32).store_uint(0, 64).store_address(self.owner.address)
            return self.owner, net.OP_VALUE, body.end_cell()
        if kind == "dispute":
            receipt = sign_slash_receipt(env.key, target, evidence_hash=op[1], tokens=7)
            return self.owner, net.OP_VALUE, slash_dispute_body(receipt, excess=self.owner.address)
        return env.poster, net.OP_VALUE, slash_execute_body(excess=env.poster.address)

    async def step(self, op: tuple) -> None:  # type: ignore[type-arg]
        env = self.env
        if op[0] == "wait":
            env.chain.advance(op[1])
            return
        if op[0] == "complete":
            env.chain.advance(op[1])
        ok, after = self.expect(op)
        sender, value, body = self.body(op)
        deployed = (await env.chain.get_account(self.wc.address)).active
        init = None if deployed else self.wc.state_init
        trace = await sender.transfer(self.wc.address, value, body, state_init=init)
        first = next(t for t in trace if t.address == self.wc.address)
        assert first.success == ok, (op, first.exit_code, self.m)
        if ok:
            self.m = after
        self._check_payouts(trace)
        await self.check()

    def _check_payouts(self, trace: list) -> None:  # type: ignore[type-arg]
        root_owner = self.env.h.owner.address
        for t in trace:
            if t.in_op == Op.PAYOUT and t.address == self.env.poster.address:
                raise AssertionError("the proxy's wallet was paid out of a worker contract")
            if t.in_op == Op.PAYOUT and t.address == root_owner:
                self.root_owner_in += t.value_in
            if t.in_op == Op.PAYOUT and t.address == self.owner.address:
                self.owner_in += t.value_in

    async def check(self) -> None:
        acc = await self.env.chain.get_account(self.wc.address)
        if not acc.active:
            assert self.m == Model()
            return
        s = parse_worker_state(acc.data)
        m = self.m
        assert s.unlock_ts == m.unlock
        assert (s.state, s.tokens, s.stake, s.slashed, s.slash_counter) == (
            m.state,
            m.tokens,
            m.stake,
            m.slashed,
            m.counter,
        )
        got = (
            None
            if s.pending_slash is None
            else (s.pending_slash.amount, s.pending_slash.evidence_hash, s.pending_slash.deadline)
        )
        assert got == m.pending
        # the stake never pays a fee, and the contract keeps nothing above stake + storage reserve
        assert m.stake <= acc.balance <= m.stake + STORAGE_RESERVE
        # everything that left went where the rules say: slashes to the root owner, the stake
        # given back and the earned fees to the worker owner
        assert self.root_owner_in == m.paid_to_root_owner
        assert self.owner_in == m.returned_to_owner + m.tokens * FEE


def test_worker_collateral_histories_follow_the_rules():
    env = Env()

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        history=st.lists(ops, min_size=1, max_size=16),
        window=st.sampled_from([0, 60, 600]),
        permille=st.sampled_from([0, 1, 400, 1000]),
        initial=st.integers(1, 5 * TON),
    )
    def prop(history: list, window: int, permille: int, initial: int) -> None:  # type: ignore[type-arg]
        h = History(env, Collateral(dispute_window_s=window, max_slash_permille=permille))

        async def go() -> None:
            await h.start()
            for op in [("stake", initial), *history]:
                await h.step(op)

        env.run(go())

    try:
        prop()
        assert env.chain.totals().conserved
    finally:
        env.close()
