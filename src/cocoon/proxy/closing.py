# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""Closing the proxy contract (reference §4.9): request, final settlement of everyone, complete.

:func:`close_step` is one resumable step, called until it reports ``closed`` (the owner runs it
with the proxy serving nothing, or from a proxy whose relay is idle):

1. an active contract gets a signed close request (state CLOSING; ``proxy_delay_before_close``
   starts) after a last state commit, so every token billed so far is committed;
2. every client whose contract is still open and who has nothing in flight gets a signed refund
   grant for its committed tokens: the final charge, then the rest of its balance back to its owner
   (the contract closes);
3. every worker owner gets a signed last payout for its committed tokens (deploying its contract
   if it was never paid): paid, and the contract closes;
4. once the delay is over and nobody is left unsettled, a signed close complete sends the proxy
   contract's fees and stake to the proxy's wallet.

Each signed message is a cumulative statement its contract takes once, so a step that fails half way
is simply run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cocoon.chain import (
    STATE_ACTIVE,
    STATE_CLOSED,
    AccountNotFound,
    Chain,
    Op,
    post_signed,
    read_client_state,
    read_proxy_state,
    read_worker_state,
    sign,
    worker_contract,
)
from cocoon.errors import ConfigError
from cocoon.proxy.chain_sync import ChainSync, parse_address
from cocoon.proxy.config import ProxyConfig
from cocoon.proxy.contract_record import current_ledger_path
from cocoon.proxy.ledger import AsyncLedger, ClientTotals, WorkerTotals

__all__ = ["CloseReport", "close_proxy", "close_step"]


@dataclass
class CloseReport:
    state: int = STATE_ACTIVE  # the proxy contract's state after this step
    unlock_at: int = 0  # chain time from which close complete is accepted
    clients_refunded: list[str] = field(default_factory=list)
    clients_waiting: list[str] = field(default_factory=list)  # requests still in flight
    workers_paid: list[str] = field(default_factory=list)
    closed: bool = False


async def close_step(sync: ChainSync, now: float) -> CloseReport:
    """One step of the close (module docstring); raises ChainError when a post fails."""
    assert sync.proxy_address is not None
    sync.closing = True  # the settlement loop stands aside: it would post commits a closing contract refuses
    state = await read_proxy_state(sync.chain, sync.proxy_address)
    if state.state == STATE_ACTIVE:
        await sync.commit_now(now)
        msg = sign(sync.key, Op.PROXY_CLOSE_REQUEST_SIGNED, target=sync.proxy_address, counter=0)
        await post_signed(sync.wallet, msg)
        state = await read_proxy_state(sync.chain, sync.proxy_address)
    report = CloseReport(state=state.state, unlock_at=state.unlock_ts)
    if state.state == STATE_CLOSED:
        report.closed = True
        return report
    for client in await sync.ledger.clients():
        await _settle_client(sync, client, report)
    for worker in await sync.ledger.workers():
        await _settle_worker(sync, worker, report)
    if not report.clients_waiting and await sync.chain.now() >= state.unlock_ts:
        msg = sign(sync.key, Op.PROXY_CLOSE_COMPLETE_SIGNED, target=sync.proxy_address, counter=0)
        await post_signed(sync.wallet, msg)
        report.state = (await read_proxy_state(sync.chain, sync.proxy_address)).state
        report.closed = report.state == STATE_CLOSED
    return report


async def _settle_client(sync: ChainSync, totals: ClientTotals, report: CloseReport) -> None:
    target = parse_address(totals.contract) if totals.contract else None
    if target is None:
        return
    try:
        if (await read_client_state(sync.chain, target)).state == STATE_CLOSED:
            return
    except AccountNotFound:
        return  # never opened: nothing to refund
    if totals.reserved_nano or totals.committed_tokens != totals.tokens:
        report.clients_waiting.append(totals.client)
        return
    msg = sign(sync.key, Op.CLIENT_GRANT_REFUND_SIGNED, target=target, counter=totals.committed_tokens)
    await post_signed(sync.wallet, msg)
    report.clients_refunded.append(totals.client)


async def _settle_worker(sync: ChainSync, totals: WorkerTotals, report: CloseReport) -> None:
    owner = parse_address(totals.worker)
    if owner is None or not totals.contract or totals.committed_tokens <= 0:
        return
    assert sync.proxy_address is not None
    deployable = worker_contract(owner, sync.proxy_address, sync.key.public, sync.contract_params)
    try:
        worker_state = await read_worker_state(sync.chain, deployable.address)
        if worker_state.state == STATE_CLOSED:
            return
        state_init = None
    except AccountNotFound:
        state_init = deployable.state_init  # never paid: the last payout deploys it
    msg = sign(
        sync.key, Op.WORKER_LAST_PAYOUT_SIGNED, target=deployable.address, counter=totals.committed_tokens
    )
    await post_signed(sync.wallet, msg, state_init=state_init)
    report.workers_paid.append(totals.worker)


async def close_proxy(config: ProxyConfig, *, chain: Chain | None = None) -> CloseReport:
    """One close step for a proxy that is not running (``cocoon proxy close``), from its home."""
    if config.chain is None:
        raise ConfigError("closing needs [proxy.chain]: the proxy contract to close")
    books = AsyncLedger.open(current_ledger_path(config.home))
    try:
        sync = ChainSync(
            config.chain, home=config.home, ledger=books, on_root=_ignore, on_paid=_nobody, chain=chain
        )
        sync.closing = True
        try:
            await sync.open()
            return await close_step(sync, time.time())
        finally:
            await sync.aclose()
    finally:
        await books.aclose()


def _ignore(_config: object) -> None:
    """Prices and allowlists do not matter to a close."""


async def _nobody(_owner: str) -> None:
    """No worker is connected to be told."""
