"""Property tests on the real emulator: cumulative charges only move forward, garbage changes nothing."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytoniq_core import Cell, begin_cell

from cocoon.chain import KeyPair, LocalChain, MessageError, Op, Wallet, WalletClient, decode_body, sign
from cocoon.chain import network as net
from cocoon.chain.messages import parse_client_state

TON = net.TON
PRICE = 1000


class Env:
    """One chain for all examples of a test; each example opens its own client contract."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.chain = LocalChain()
        self.key = KeyPair.generate()
        self.run(self._setup())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    async def _setup(self) -> None:
        h = await net.bootstrap_local_network(
            self.chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[],
            worker_image_hashes=[],
            models={},
            proxy_addresses=[],
            params=net.default_params(price_per_token=PRICE, worker_fee_per_token=PRICE // 2),
        )
        self.params = h.config.params
        self.client = WalletClient(self.chain, Wallet(KeyPair.generate()))
        owner = WalletClient(self.chain, Wallet(KeyPair.generate()))
        await self.chain.faucet(self.client.address, 10_000 * TON)
        await self.chain.faucet(owner.address, 100 * TON)
        self.proxy_sc = await net.open_proxy_contract(owner, self.key.public, h.root, self.params, stake=TON)
        self.n = 0

    async def new_client_contract(self) -> object:
        # a fresh owner each time gives a fresh contract address
        self.n += 1
        w = WalletClient(self.chain, Wallet(KeyPair.generate()))
        await self.chain.faucet(w.address, 20 * TON)
        self.client = w
        return await net.open_client_contract(w, self.proxy_sc, self.key.public, self.params, amount=10 * TON)

    def close(self) -> None:
        self.chain.close()
        self.loop.close()


def test_cumulative_charges_only_increase():
    env = Env()

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(counters=st.lists(st.integers(0, 5000), min_size=1, max_size=6))
    def prop(counters: list[int]) -> None:
        async def go() -> None:
            sc = await env.new_client_contract()
            best = 0
            for i, c in enumerate(counters):
                msg = sign(env.key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=c, query_id=i)
                trace = await net.post_signed(env.client, msg, check=False)
                ok = next(t for t in trace if t.address == sc).success
                assert ok == (c > best)
                best = max(best, c)
                st_ = parse_client_state((await env.chain.get_account(sc)).data)
                assert st_.tokens_used == best
                assert st_.balance == 10 * TON - best * PRICE

        env.run(go())

    try:
        prop()
        assert env.chain.totals().conserved
    finally:
        env.close()


def test_garbage_bodies_change_nothing():
    env = Env()
    sc = env.run(env.new_client_contract())

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(min_size=1, max_size=100), op=st.sampled_from([None, *[int(o) for o in Op]]))
    def prop(data: bytes, op: int | None) -> None:
        b = begin_cell()
        if op is not None:
            b.store_uint(op, 32)
        b.store_bytes(data[: 123 - (4 if op is not None else 0)])
        body: Cell = b.end_cell()
        try:
            decode_body(body)
            return  # a well-formed message by chance: not garbage
        except MessageError:
            pass

        async def go() -> None:
            before = (await env.chain.get_account(sc)).data.hash
            trace = await env.client.transfer(sc, net.OP_VALUE, body)
            assert not next(t for t in trace if t.address == sc).success
            assert (await env.chain.get_account(sc)).data.hash == before

        env.run(go())

    try:
        prop()
    finally:
        env.close()
