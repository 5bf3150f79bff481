"""LocalChain throughput and gas per Cocoon operation (``cocoon chain local bench``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cocoon.chain._ton import Address
from cocoon.chain.api import TxRecord
from cocoon.chain.localchain import LocalChain
from cocoon.chain.messages import Op, Params
from cocoon.chain.network import (
    TON,
    bootstrap_local_network,
    default_params,
    open_client_contract,
    open_proxy_contract,
    post_signed,
    send_client_op,
    send_root_op,
    worker_contract,
)
from cocoon.chain.payments import sign, sign_state_commit
from cocoon.chain.wallet import KeyPair, Wallet, WalletClient

__all__ = ["GROUP", "TARGET_TX_PER_S", "BenchResult", "OpCost", "Rate", "run_bench"]

GROUP = 8  # concurrent senders in the group-commit measurement
TARGET_TX_PER_S = 1000  # issue 15: LocalChain >= 1,000 durable transactions a second


@dataclass(frozen=True, slots=True)
class Rate:
    """Transactions over the wall-clock and the CPU time they took (the CPU figure holds on a busy
    machine; the wall figure includes the disk syncs)."""

    txs: int
    seconds: float
    cpu_seconds: float

    @property
    def tx_per_s(self) -> float:
        return self.txs / self.seconds if self.seconds else 0.0

    @property
    def tx_per_cpu_s(self) -> float:
        return self.txs / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def of_target(self) -> float:
        """tx/s ÷ :data:`TARGET_TX_PER_S`."""
        return self.tx_per_s / TARGET_TX_PER_S


class _Timer:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rate(self, txs: int) -> Rate:
        return Rate(txs, time.perf_counter() - self.wall, time.process_time() - self.cpu)


@dataclass(frozen=True, slots=True)
class OpCost:
    """Gas and fees of one operation: the target contract's transaction, and the whole trace."""

    op: str
    gas: int
    contract_fee: int
    trace_txs: int
    trace_fees: int


@dataclass(frozen=True, slots=True)
class BenchResult:
    transfers: int
    transfer: Rate  # one transfer at a time, each its own durable commit
    charges: int
    charge: Rate  # one signed charge at a time, each its own durable commit
    ops: tuple[OpCost, ...]
    grouped: Rate  # the same transfers from GROUP senders at once, one group commit each round
    grouped_charge: Rate  # the same charges, GROUP of them one group commit

    @property
    def transfer_tx_per_s(self) -> float:
        return self.transfer.tx_per_s

    @property
    def charge_tx_per_s(self) -> float:
        return self.charge.tx_per_s

    @property
    def grouped_tx_per_s(self) -> float:
        return self.grouped.tx_per_s


def _cost(op: str, trace: list[TxRecord], target: object) -> OpCost:
    main = next(t for t in trace if t.address == target)
    return OpCost(
        op, main.gas_used, main.total_fees, len(trace), sum(t.total_fees + t.fwd_fee_in for t in trace)
    )


async def run_bench(path: Path | None, *, transfers: int = 200, charges: int = 200) -> BenchResult:
    """Run on a fresh chain at ``path`` (None = in memory)."""
    chain = LocalChain(path)
    try:
        h = await bootstrap_local_network(
            chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[os.urandom(32)],
            worker_image_hashes=[os.urandom(32)],
            models={os.urandom(32): "bench-model"},
            proxy_addresses=["127.0.0.1:8800"],
            params=default_params(price_per_token=20, worker_fee_per_token=16),
        )
        wallets = [WalletClient(chain, Wallet(KeyPair.generate())) for _ in range(3)]
        for w in wallets:
            await chain.faucet(w.address, 10_000 * TON)
        for w in wallets:  # deploy the wallets: transfers to an uninitialised wallet would bounce
            await w.transfer(h.owner.address, TON // 1000, bounce=False)
        alice, proxy_owner, worker = wallets
        ops: list[OpCost] = []
        transfer = await _transfers(alice, worker, transfers, ops)
        grouped = await _grouped_transfers(chain, worker, transfers)
        trace_root = await send_root_op(
            h.owner, h.root, Op.ADD_MODEL_TYPE, hash=os.urandom(32), name="bench-model-2"
        )
        ops.append(_cost("root add model (hash → name)", trace_root, h.root))
        bench = _Contracts(KeyPair.generate(), h.root, h.config.params, alice, proxy_owner, worker)
        await bench.open(ops)
        charge = await bench.charges(charges, ops)
        grouped_charge = await bench.grouped_charges(chain, charges)
        await bench.payouts_and_close(chain, ops)
        if not chain.totals().conserved:
            raise AssertionError("value not conserved")
        return BenchResult(transfers, transfer, charges, charge, tuple(ops), grouped, grouped_charge)
    finally:
        chain.close()


async def _transfers(sender: WalletClient, receiver: WalletClient, count: int, ops: list[OpCost]) -> Rate:
    """Throughput of wallet transfers (external + receiving wallet = 2 transactions each)."""
    timer = _Timer()
    txs = 0
    trace: list[TxRecord] = []
    for _ in range(count):
        trace = await sender.transfer(receiver.address, TON // 100)
        txs += len(trace)
    rate = timer.rate(txs)
    ops.append(_cost("wallet transfer", trace, sender.address))
    return rate


async def _grouped_transfers(chain: LocalChain, receiver: WalletClient, count: int) -> Rate:
    """Transfers from :data:`GROUP` wallets at once, as a service's concurrent senders: the threaded
    chain runs what queues up as one group commit, here one per round of one transfer per sender."""
    senders = [WalletClient(chain, Wallet(KeyPair.generate())) for _ in range(GROUP)]
    for w in senders:
        await chain.faucet(w.address, 1_000 * TON)
        await w.transfer(receiver.address, TON // 1000, bounce=False)  # deploy
    timer = _Timer()
    txs = 0
    for _ in range(max(1, count // GROUP)):
        with chain.group():
            for w in senders:
                txs += len(await w.transfer(receiver.address, TON // 100))
    return timer.rate(txs)


@dataclass
class _Contracts:
    """The proxy, client and worker contracts of one bench run, and the operations on them."""

    key: KeyPair
    root: Address
    params: Params
    alice: WalletClient
    proxy_owner: WalletClient
    worker: WalletClient
    proxy_sc: Address | None = None
    client_sc: Address | None = None
    charged: int = 0  # signed charges posted (each one's counter is the next)

    async def open(self, ops: list[OpCost]) -> None:
        p = self.params
        self.proxy_sc = await open_proxy_contract(
            self.proxy_owner, self.key.public, self.root, p, stake=p.min_proxy_stake
        )
        self.client_sc = await open_client_contract(
            self.alice, self.proxy_sc, self.key.public, p, amount=1000 * TON
        )
        trace = await send_client_op(self.alice, self.client_sc, Op.CLIENT_TOP_UP, amount=TON)
        ops.append(_cost("client top-up", trace, self.client_sc))

    async def charges(self, count: int, ops: list[OpCost]) -> Rate:
        """Throughput of signed cumulative charges (wallet → client → proxy contract + excesses)."""
        timer = _Timer()
        txs = 0
        trace: list[TxRecord] = []
        for _ in range(count):
            trace = await self._charge()
            txs += len(trace)
        rate = timer.rate(txs)
        ops.append(_cost("client charge (signed)", trace, self.client_sc))
        return rate

    async def grouped_charges(self, chain: LocalChain, count: int) -> Rate:
        """The same charges, :data:`GROUP` of them a group commit (a settlement loop posting what
        queued up while the chain was busy)."""
        timer = _Timer()
        txs = 0
        for _ in range(max(1, count // GROUP)):
            with chain.group():
                for _ in range(GROUP):
                    txs += len(await self._charge())
        return timer.rate(txs)

    async def _charge(self) -> list[TxRecord]:
        assert self.client_sc is not None
        self.charged += 1
        i = self.charged
        msg = sign(self.key, Op.CLIENT_CHARGE_SIGNED, target=self.client_sc, counter=i * 1000, query_id=i)
        return await post_signed(self.alice, msg)

    async def payouts_and_close(self, chain: LocalChain, ops: list[OpCost]) -> None:
        assert self.proxy_sc is not None and self.client_sc is not None
        wc = worker_contract(self.worker.address, self.proxy_sc, self.key.public, self.params)
        pay = sign(self.key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=1000)
        trace = await post_signed(self.worker, pay, state_init=wc.state_init)
        ops.append(_cost("worker payout (signed, deploys)", trace, wc.address))
        pay2 = sign(self.key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=2000)
        trace = await post_signed(self.worker, pay2)
        ops.append(_cost("worker payout (signed)", trace, wc.address))
        ops.append(_cost("  proxy pays worker", trace, self.proxy_sc))
        commit = sign_state_commit(self.key, target=self.proxy_sc, seqno=1, session_hash=os.urandom(32))
        trace = await post_signed(self.proxy_owner, commit)
        ops.append(_cost("proxy state commit (signed)", trace, self.proxy_sc))
        client, alice = self.client_sc, self.alice
        trace = await send_client_op(alice, client, Op.CLIENT_WITHDRAW, amount=TON)
        ops.append(_cost("client withdraw", trace, client))
        ops.append(
            _cost(
                "client close (start)", await send_client_op(alice, client, Op.CLIENT_REQUEST_REFUND), client
            )
        )
        chain.advance(self.params.client_delay_before_close)
        trace = await send_client_op(alice, client, Op.CLIENT_REQUEST_REFUND)
        ops.append(_cost("client close (refund)", trace, client))
