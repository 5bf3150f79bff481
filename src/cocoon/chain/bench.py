"""LocalChain throughput and gas per Cocoon operation (``cocoon chain local bench``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cocoon.chain.api import TxRecord
from cocoon.chain.localchain import LocalChain
from cocoon.chain.messages import Op
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

__all__ = ["BenchResult", "OpCost", "run_bench"]


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
    transfer_txs: int
    transfer_seconds: float
    charges: int
    charge_txs: int
    charge_seconds: float
    ops: tuple[OpCost, ...]

    @property
    def transfer_tx_per_s(self) -> float:
        return self.transfer_txs / self.transfer_seconds

    @property
    def charge_tx_per_s(self) -> float:
        return self.charge_txs / self.charge_seconds


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
            model_hashes=[os.urandom(32)],
            proxy_addresses=["127.0.0.1:8800"],
            params=default_params(price_per_token=20, worker_fee_per_token=16),
        )
        params = h.config.params
        wallets = [WalletClient(chain, Wallet(KeyPair.generate())) for _ in range(3)]
        for w in wallets:
            await chain.faucet(w.address, 10_000 * TON)
        alice, proxy_owner, worker = wallets
        for w in wallets:  # deploy the wallets: transfers to an uninitialised wallet would bounce
            await w.transfer(h.owner.address, TON // 1000, bounce=False)
        ops: list[OpCost] = []

        # throughput: wallet transfers (external + receiving wallet = 2 transactions each)
        t0 = time.perf_counter()
        txs = 0
        for _ in range(transfers):
            trace = await alice.transfer(worker.address, TON // 100)
            txs += len(trace)
        transfer_s = time.perf_counter() - t0
        ops.append(_cost("wallet transfer", trace, alice.address))

        key = KeyPair.generate()
        trace_root = await send_root_op(h.owner, h.root, Op.ADD_MODEL_TYPE, hash=os.urandom(32))
        ops.append(_cost("root add model hash", trace_root, h.root))
        proxy_sc = await open_proxy_contract(
            proxy_owner, key.public, h.root, params, stake=params.min_proxy_stake
        )
        client_sc = await open_client_contract(alice, proxy_sc, key.public, params, amount=1000 * TON)
        ops.append(
            _cost(
                "client top-up",
                await send_client_op(alice, client_sc, Op.CLIENT_TOP_UP, amount=TON),
                client_sc,
            )
        )

        # throughput: signed cumulative charges (wallet → client contract → proxy contract + excesses)
        t0 = time.perf_counter()
        txs_c = 0
        for i in range(1, charges + 1):
            msg = sign(key, Op.CLIENT_CHARGE_SIGNED, target=client_sc, counter=i * 1000, query_id=i)
            trace = await post_signed(alice, msg)
            txs_c += len(trace)
        charge_s = time.perf_counter() - t0
        ops.append(_cost("client charge (signed)", trace, client_sc))

        wc = worker_contract(worker.address, proxy_sc, key.public, params)
        pay = sign(key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=1000)
        ops.append(
            _cost(
                "worker payout (signed, deploys)",
                await post_signed(worker, pay, state_init=wc.state_init),
                wc.address,
            )
        )
        pay2 = sign(key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=2000)
        trace = await post_signed(worker, pay2)
        ops.append(_cost("worker payout (signed)", trace, wc.address))
        ops.append(_cost("  proxy pays worker", trace, proxy_sc))
        commit = sign_state_commit(key, target=proxy_sc, seqno=1, session_hash=os.urandom(32))
        ops.append(_cost("proxy state commit (signed)", await post_signed(proxy_owner, commit), proxy_sc))
        ops.append(
            _cost(
                "client withdraw",
                await send_client_op(alice, client_sc, Op.CLIENT_WITHDRAW, amount=TON),
                client_sc,
            )
        )
        ops.append(
            _cost(
                "client close (start)",
                await send_client_op(alice, client_sc, Op.CLIENT_REQUEST_REFUND),
                client_sc,
            )
        )
        chain.advance(params.client_delay_before_close)
        ops.append(
            _cost(
                "client close (refund)",
                await send_client_op(alice, client_sc, Op.CLIENT_REQUEST_REFUND),
                client_sc,
            )
        )
        if chain.total_balances() + chain.total_fees() != chain.minted:
            raise AssertionError("value not conserved")
        return BenchResult(transfers, txs, transfer_s, charges, txs_c, charge_s, tuple(ops))
    finally:
        chain.close()
