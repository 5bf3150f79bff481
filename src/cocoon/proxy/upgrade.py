# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""Moving a running proxy to new contracts when the root's ``params_version`` changes (reference §4.9).

Params (prices, delays, stakes) are part of every contract's init data, so a new params version
means a new proxy contract, and new client and worker contracts under it. :class:`ContractUpgrade`
does the move, once per version, while the proxy runs:

1. new requests are refused as busy (:attr:`ContractUpgrade.moving`) and running ones finish;
2. the old contract is closed with :func:`cocoon.proxy.closing.close_step`: a last state commit and
   the close request, every client's final charge and refund, every worker's last payout;
3. a fresh billing store is opened for the new contract (the old one stays, read by the close):
   ``contracts.json`` in the home names the current store and the contracts still closing, written
   before the new store is opened, so a restart resumes where the move was;
4. :meth:`ChainSync.successor` opens the new contract (deploying it from the proxy wallet when
   ``open_contract`` is on) and takes over settlement;
5. both ports announce the new contract, and every live link is closed: workers and clients dial
   again and are bound to their contracts under the new proxy contract (a client tops up its new
   contract from the refund its wallet just got);
6. the old contract's close finishes in the background: close complete once its delay is over (the
   fees and stake go back to the proxy wallet). A restart picks up contracts still closing.

A move that cannot open the new contract (an unfunded wallet) keeps refusing requests with the reason
and retries every ``sync_interval_s``: serving on a closing contract would bill what nobody can pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from cocoon import net
from cocoon.chain import STATE_CLOSED, ChainError, RootConfig, parse_address, read_proxy_state
from cocoon.errors import ConfigError
from cocoon.proxy.chain_sync import ChainSync
from cocoon.proxy.closing import CloseReport, close_step
from cocoon.proxy.contract_record import read_contracts, write_contracts
from cocoon.proxy.ledger import AsyncLedger

__all__ = ["ContractUpgrade", "UpgradeHost"]

log = logging.getLogger(__name__)


class Idle(Protocol):
    @property
    def in_flight(self) -> int: ...

    async def wait_idle(self) -> None: ...


class UpgradeHost(Protocol):
    """What the move needs of the proxy service."""

    books: AsyncLedger | None
    chain_sync: ChainSync | None

    @property
    def relay(self) -> Idle: ...

    def announce(self) -> dict[str, Any]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]: ...


class ContractUpgrade:
    """The proxy's moves to new contracts (module docstring). ``listeners``: the proxy's ports."""

    def __init__(self, host: UpgradeHost, home: Path) -> None:
        self.host = host
        self.home = home
        self.listeners: list[net.Listener] = []
        self.moving = False  # requests are refused while True
        self.why = ""  # what the move waits for (shown in the refusal)
        self.moves = 0  # completed moves
        self.closing: dict[str, CloseReport] = {}  # old proxy contract → its last close step
        self._target: RootConfig | None = None
        self._pending: RootConfig | None = None
        self.on_moved: Callable[[ChainSync], None] | None = None  # the new contract's sync took over
        self._owned: list[ChainSync | AsyncLedger] = []  # opened here, closed with the proxy

    def start(self, config: RootConfig) -> None:
        """The root's params version moved (ChainSync's ``on_new_params``): move, once per version."""
        if self.moving or (self._target is not None and self._target.params_version == config.params_version):
            return
        self._target = config
        self.moving = True
        self.why = f"moving to the contracts of root params version {config.params_version}"
        if self.listeners:
            self.host.spawn(self._move(config), name="contract-move")
        else:  # found while starting: the move starts once the ports are up (serve_on)
            self._pending = config

    def serve_on(self, listeners: list[net.Listener]) -> None:
        """The proxy's ports: a move re-announces on them (and a move found at start begins now)."""
        self.listeners += listeners
        if self._pending is not None:
            config, self._pending = self._pending, None
            self.host.spawn(self._move(config), name="contract-move")

    async def _move(self, config: RootConfig) -> None:
        old_sync, old_books = self.host.chain_sync, self.host.books
        assert old_sync is not None and old_books is not None and old_sync.proxy_address is not None
        old_address = old_sync.proxy_address.to_str()
        log.warning("root params version → %d: closing proxy contract %s", config.params_version, old_address)
        while self.host.relay.in_flight:  # noqa: ASYNC110 - running answers finish, billed on the old books
            await asyncio.sleep(0.05)
        await self.host.relay.wait_idle()
        await self._retrying("close the old proxy contract", lambda: self._close_step(old_sync, old_address))
        new_books = self._open_new_books(old_sync, old_books, config)
        sync = old_sync.successor(new_books)
        await self._retrying("open the new proxy contract", sync.open)
        self._owned.append(sync)
        self._record_current(sync)
        self.host.books, self.host.chain_sync = new_books, sync
        if self.on_moved is not None:
            self.on_moved(sync)
        self.host.spawn(sync.run(), name="chain-sync")
        info = self.host.announce()
        for listener in self.listeners:
            listener.set_info(info)  # new handshakes name the new contract
        self.moving, self.why = False, ""
        self.moves += 1
        await asyncio.gather(
            *(
                c.aclose("the proxy moved to new contracts: dial again")
                for li in self.listeners
                for c in li.connections
            ),
            return_exceptions=True,
        )
        log.warning(
            "now serving on proxy contract %s", sync.proxy_address.to_str() if sync.proxy_address else "?"
        )
        await self._finish_close(old_sync, old_address)

    async def _retrying(self, what: str, step: Callable[[], Awaitable[object]]) -> None:
        """Run ``step`` until it succeeds: an unfunded wallet or the chain away keeps the move waiting
        (requests refused with the reason), never half done."""
        assert self.host.chain_sync is not None
        while True:
            try:
                await step()
                return
            except (ConfigError, ChainError) as exc:
                self.why = f"cannot {what}: {exc}"
                log.error("ACTION REQUIRED: %s (retrying)", self.why)
                await asyncio.sleep(self.host.chain_sync.settings.sync_interval_s)

    def _open_new_books(self, old_sync: ChainSync, old_books: AsyncLedger, config: RootConfig) -> AsyncLedger:
        """Record the move (old store closing, new store current), then open the new store."""
        doc = read_contracts(self.home)
        name = f"proxy-ledger-v{config.params_version}.sqlite"
        old = {
            "ledger": old_books.path.name,
            "proxy_contract": old_sync.proxy_address.to_str() if old_sync.proxy_address else "",
        }
        doc["closing"] = [*doc.get("closing", []), old]
        doc["current"] = name
        doc.pop("contract", None)  # known once the new contract is open
        write_contracts(self.home, doc)
        books = AsyncLedger.open(self.home / name)
        self._owned.append(books)
        return books

    async def _close_step(self, sync: ChainSync, address: str) -> CloseReport:
        report = await close_step(sync, time.time())
        self.closing[address] = report
        return report

    async def _finish_close(self, sync: ChainSync, address: str) -> None:
        """Step the old contract's close until it is closed, then forget it."""
        report = self.closing[address]
        while not report.closed:
            await asyncio.sleep(sync.settings.sync_interval_s)
            try:
                report = await self._close_step(sync, address)
            except (ChainError, ConfigError) as exc:  # the chain away: try again next round
                log.warning("closing proxy contract %s: %s", address, exc)
        log.warning("proxy contract %s is closed: fees and stake are back in the proxy wallet", address)
        await self._forget(address)

    async def _forget(self, address: str) -> None:
        doc = read_contracts(self.home)
        doc["closing"] = [c for c in doc.get("closing", []) if c.get("proxy_contract") != address]
        write_contracts(self.home, doc)

    # -- a restart while contracts were still closing ----------------------------------------------

    def _record_current(self, sync: ChainSync) -> None:
        """Note which contract the current store belongs to (read at the next start)."""
        doc = read_contracts(self.home)
        address = sync.proxy_address.to_str() if sync.proxy_address else ""
        if doc.get("contract") != address:
            write_contracts(self.home, {**doc, "contract": address})

    def resume(self, template: ChainSync) -> None:
        """Finish the close of every contract a previous run left closing (after ``template`` opened)."""
        if not self.moving:
            self._record_current(template)
        for record in read_contracts(self.home).get("closing", []):
            self.host.spawn(self._resume_one(template, record), name="contract-close")

    async def _resume_one(self, template: ChainSync, record: dict[str, Any]) -> None:
        address = str(record["proxy_contract"])
        contract = parse_address(address)
        state = await read_proxy_state(template.chain, contract)
        if state.state == STATE_CLOSED:
            await self._forget(address)
            return
        books = AsyncLedger.open(self.home / str(record["ledger"]))
        self._owned.append(books)
        sync = ChainSync(
            template.settings,
            home=self.home,
            ledger=books,
            on_root=_ignore,
            on_paid=_nobody,
            chain=template.chain,
            contract_params=state.params,  # as the contract holds them (clients' and workers' init data)
            contract_address=contract,
        )
        sync.closing = True
        await sync.open()
        await self._close_step(sync, address)
        await self._finish_close(sync, address)

    async def aclose(self) -> None:
        for owned in reversed(self._owned):
            with contextlib.suppress(Exception):
                await owned.aclose()
        self._owned.clear()

    def statistics(self) -> dict[str, Any]:
        return {
            "moving": self.moving,
            "why": self.why,
            "moves": self.moves,
            "closing": {
                a: {"state": r.state, "unlock_at": r.unlock_at, "closed": r.closed}
                for a, r in self.closing.items()
            },
        }


def _ignore(_config: object) -> None:
    """A closing contract's sync applies no prices or allowlists."""


async def _nobody(_owner: str) -> None:
    """Nobody is told about a closing contract's payouts (its last payouts are posted on chain)."""
