# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""The proxy on a chain: root config, rollback defence, state commits, client charges, worker payouts.

:class:`ChainSync` is owned by the proxy service when ``ProxyConfig.chain`` is set. It knows nothing of
the service: it gets the proxy's home, its billing store (:class:`~cocoon.proxy.ledger.AsyncLedger`, so
no durable write runs on the event loop) and two callbacks — ``on_root`` (a root config was read: apply
its prices, allowed image and model hashes) and ``on_paid`` (a worker's payout moved: tell it).

At start (:meth:`ChainSync.open`, before the proxy serves anything):

1. read the root contract and hand it to ``on_root``: prices, allowed worker image hashes (→ the
   worker-port policy) and model hashes (→ the admission of workers);
2. find the proxy contract (owner = our wallet, key = our signing key, under the root's params; opened
   from the wallet with the minimum stake when missing and ``open_contract`` is on) and
   require it to be active and bound to our key;
3. refuse a billing store older than the last state commit on chain (``check_not_rolled_back``) or
   one that billed less than clients were already charged / workers paid (``StoreRolledBack``);
4. start a session (random hash, seqno + 1) and commit it on chain.

Then a loop (:meth:`ChainSync.run`, a task the proxy owns and cancels on stop) every ``sync_interval_s``: re-read the root
every ``root_refresh_s``; mark commits seen on chain (``mark_committed``); bump the seqno and post a
signed state commit when :class:`~cocoon.chain.PostingPolicy` says one is due; for every client read
its contract (balance, stake, tokens charged → the ledger, which then frees funds) and post a signed
cumulative charge for the committed tokens when it is worth the fee; for every worker read what its
contract paid out and post a signed payout when due, then tell the worker (``notify("payment")``).

Each pass that moved a payee's committed total also hands that payee its signed cumulative
statement (``worker_statement`` / ``client_statement``: the very message the contract accepts), so
workers and clients hold what they are owed and can post it themselves (:mod:`cocoon.node.statements`).

On a LocalChain a post executes at once, so a charge or payout is visible to the next read; on a
remote chain it lands later and the next tick picks it up. IOUs are only ever signed for committed
tokens (reference §4.8): what is on chain never exceeds what a restored store could prove.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocoon.chain import (
    STATE_ACTIVE,
    STATE_CLOSING,
    TON,
    AccountNotFound,
    Address,
    AddressError,
    Chain,
    ChainError,
    KeyPair,
    Op,
    Params,
    PostingPolicy,
    RootConfig,
    Wallet,
    WalletClient,
    client_contract,
    fetch_root_config,
    open_chain,
    open_proxy_contract,
    post_signed,
    proxy_contract,
    read_client_state,
    read_proxy_state,
    read_worker_state,
    send_proxy_op,
    sign,
    sign_state_commit,
    state_init_boc,
    worker_contract,
)
from cocoon.chain import parse_address as chain_parse_address
from cocoon.core.keyfile import load_or_create_seed
from cocoon.errors import ConfigError
from cocoon.node.ownership import verify_owner_proof
from cocoon.node.statements import HeldMismatch, check_payee_report, statement_params
from cocoon.proxy.config import ProxyChainSettings
from cocoon.proxy.ledger import AsyncLedger, ClientTotals, WorkerTotals
from cocoon.proxy.pricing import PriceParams

__all__ = ["ChainSync", "SyncStats", "parse_address", "price_params"]

log = logging.getLogger(__name__)


def parse_address(text: str) -> Address | None:
    """A TON address (any spelling), or None when ``text`` is not one."""
    try:
        return chain_parse_address(text)
    except AddressError:
        return None


def _wallet_address(public_key: bytes) -> str:
    # A wallet's address depends only on its public key (and subwallet): the seed is not needed.
    return str(Wallet(KeyPair(bytes(32), public_key)).address.to_str())


def price_params(config: RootConfig) -> PriceParams:
    return PriceParams(
        price_per_token=config.price_per_token,
        worker_fee_per_token=config.worker_fee_per_token,
        prompt_mult=config.prompt_multiplier,
        cached_mult=config.cached_multiplier,
        completion_mult=config.completion_multiplier,
        reasoning_mult=config.reasoning_multiplier,
    )


@dataclass
class SyncStats:
    """What the loop has done (operator view and tests)."""

    ticks: int = 0
    errors: int = 0
    commits_posted: int = 0
    commits_seen: int = 0
    charges_posted: int = 0
    payouts_posted: int = 0
    refunds_granted: int = 0
    fees_withdrawn: int = 0  # times
    last_error: str = ""
    alerts: list[str] = field(default_factory=list)  # payees' held statements that disagreed with our books


class ChainSync:
    def __init__(
        self,
        settings: ProxyChainSettings,
        *,
        home: Path,
        ledger: AsyncLedger,
        on_root: Callable[[RootConfig], None],
        on_paid: Callable[[str], Awaitable[None]],
        chain: Chain | None = None,
        on_charged: Callable[[str], Awaitable[None]] | None = None,
        on_new_params: Callable[[RootConfig], None] | None = None,
        contract_params: Params | None = None,
        contract_address: Address | None = None,
    ) -> None:
        """``on_new_params``: the root's params version moved past our contract's (proxy.upgrade
        moves to new contracts); ``contract_params``: the params our contract was made under, when
        not the root's current ones, and ``contract_address`` its address (a contract an upgrade
        left closing: both as read from that contract)."""
        self.settings = settings
        self.home = home
        self._on_new_params = on_new_params
        self._contract_params = contract_params
        self._contract_address = contract_address
        self.ledger = ledger
        self._on_root = on_root
        self._on_paid = on_paid  # a worker's payout or statement moved
        self._on_charged = on_charged  # a client's statement moved
        self._chain = chain
        self._own_chain = chain is None
        self.key = KeyPair.from_seed(
            load_or_create_seed(settings.signing_key_file or home / "chain-signing.key")
        )
        self.wallet_key = KeyPair.from_seed(
            load_or_create_seed(settings.wallet_key_file or home / "chain-wallet.key")
        )
        root = parse_address(settings.root_address)
        if root is None:
            raise ConfigError(f"chain.root_address {settings.root_address!r} is not a TON address")
        self.root = root
        self.policy = PostingPolicy(
            fee_estimate=settings.fee_estimate_nano,
            min_client_charge=settings.min_client_charge_nano,
            min_worker_payout=settings.min_worker_payout_nano,
            min_idle_worker_payout=settings.min_idle_worker_payout_nano,
            max_fee_ratio=settings.max_fee_ratio,
            commit_interval_s=settings.commit_interval_s,
        )
        self.session_hash = secrets.token_bytes(32)
        self.stats = SyncStats()
        self.root_config: RootConfig | None = None
        self.proxy_address: Address | None = None
        self._wallet: WalletClient | None = None
        self._root_read_at = 0.0
        self._last_commit_at: int | None = None
        self._committed_total = -1  # Σ client tokens at the last commit posted
        self._worker_tokens: dict[str, int] = {}  # tokens per worker at the previous tick (idle check)
        self._stated: dict[str, int] = {}  # committed tokens of the last statement each payee was sent
        self._lock = asyncio.Lock()  # one settlement pass at a time (loop, queries, start)
        self.closing = False  # set by proxy.closing: the contract is being closed, the loop stands aside
        # (seqno, session hash) → the 32 bytes a state commit carries instead of the bare session hash
        # (proxy.integrity: the session bound to the anchored worker statistics); None: the session hash.
        self.commit_hash: Callable[[int, bytes], Awaitable[bytes]] | None = None
        self._posted_hashes: list[bytes] = [self.session_hash]  # commits of this session (the last 16)

    @property
    def posting(self) -> asyncio.Lock:
        """Held by each settlement pass: others posting from the proxy wallet take it too (one seqno)."""
        return self._lock

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def chain(self) -> Chain:
        if self._chain is None:
            raise ChainError("chain sync is not open")
        return self._chain

    @property
    def wallet(self) -> WalletClient:
        if self._wallet is None:
            raise ChainError("chain sync is not open")
        return self._wallet

    @property
    def contract_params(self) -> Params:
        """The params our proxy contract (and its clients' and workers' contracts) are made under."""
        if self._contract_params is not None:
            return self._contract_params
        if self.root_config is None:
            raise ChainError("chain sync is not open")
        return self.root_config.params

    def successor(self, ledger: AsyncLedger) -> ChainSync:
        """A sync for the contract of the root's current params, over ``ledger``, telling the same
        callbacks (the proxy's move to new contracts)."""
        successor = ChainSync(
            self.settings,
            home=self.home,
            ledger=ledger,
            on_root=self._on_root,
            on_paid=self._on_paid,
            chain=None if self._own_chain else self._chain,
            on_charged=self._on_charged,
            on_new_params=self._on_new_params,
        )
        successor.commit_hash = self.commit_hash
        return successor

    @property
    def params(self) -> PriceParams:
        """The prices of the root config last read."""
        if self.root_config is None:
            raise ChainError("chain sync is not open")
        return price_params(self.root_config)

    async def open(self) -> None:
        """Everything before serving (module docstring, steps 1–4); raises instead of serving unsafely."""
        if self._chain is None:
            self._chain = open_chain(self.settings, clock=time.time)  # makes missing folders 0700
        self._wallet = WalletClient(self.chain, Wallet(self.wallet_key))
        await self.refresh_root()
        assert self.root_config is not None
        if self._contract_address is not None and self._contract_params is None:
            with contextlib.suppress(AccountNotFound):  # missing: the check below says so
                self._contract_params = (await read_proxy_state(self.chain, self._contract_address)).params
        address = (
            self._contract_address
            or proxy_contract(self.wallet.address, self.key.public, self.root, self.contract_params).address
        )
        if self.settings.open_contract and not (await self.chain.get_account(address)).active:
            await self._open_contract()
        try:
            state = await read_proxy_state(self.chain, address)
        except AccountNotFound:
            raise ConfigError(
                f"proxy contract {address.to_str()} is not deployed: open it with the proxy's signing key "
                f"and wallet (LocalNetworkHandles.open_proxy) before starting the proxy"
            ) from None
        usable = (STATE_ACTIVE, STATE_CLOSING) if self.closing else (STATE_ACTIVE,)
        if state.public_key != self.key.public or state.state not in usable:
            raise ConfigError(f"proxy contract {address.to_str()} is not an active contract of this key")
        self.proxy_address = address
        # Rollback defence: a store older than what we anchored on chain must not serve.
        await self.ledger.check_not_rolled_back(state.commit_seqno)
        now = time.time()
        for client in await self.ledger.clients():
            await self._read_client(client, now)
        for worker in await self.ledger.workers():
            await self._read_worker(worker, now)
        if state.state == STATE_CLOSING:
            return  # a closing contract takes no more commits (proxy.closing finishes the close)
        await self.ledger.start_session(self.session_hash, now)
        async with self._lock:
            await self._anchor(now)
        if (
            self._on_new_params is not None
            and self.contract_params.params_version != self.root_config.params_version
        ):
            self._on_new_params(self.root_config)  # the root moved on while we were stopped

    async def _open_contract(self) -> None:
        """Deploy our proxy contract with the minimum stake, paid from our wallet."""
        assert self.root_config is not None
        stake = self.root_config.min_proxy_stake
        need = stake + TON  # the stake plus gas for this and the first posts
        have = await self.wallet.balance()
        if have < need:
            raise ConfigError(
                f"ACTION REQUIRED: fund the proxy wallet {self.wallet.address.to_str()} with at least "
                f"{need / TON:.3f} TON (it holds {have / TON:.3f}) so it can open the proxy contract"
            )
        await open_proxy_contract(self.wallet, self.key.public, self.root, self.contract_params, stake=stake)
        log.info("opened the proxy contract with a stake of %d nanoTON", stake)

    async def aclose(self) -> None:
        if self._own_chain and self._chain is not None:
            with contextlib.suppress(Exception):
                await self._chain.aclose()
            self._chain = None

    async def run(self) -> None:
        """The settlement loop (the owner runs it as a task and cancels it on stop)."""
        while True:
            await asyncio.sleep(self.settings.sync_interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the chain may be briefly unavailable: try again next tick
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("chain sync failed: %s", self.stats.last_error)

    # -- one pass --------------------------------------------------------------------------------

    async def tick(self) -> None:
        """One settlement pass (the loop calls it; tests may call it directly)."""
        async with self._lock:
            if self.closing:
                return
            now = time.time()
            self.stats.ticks += 1
            if now - self._root_read_at >= self.settings.root_refresh_s:
                await self.refresh_root()
            await self._anchor(now)
            # LocalChain runs each transaction on this thread: let requests through between accounts.
            for client in await self.ledger.clients():
                await self._settle_client(client, now)
                await asyncio.sleep(0)
            for worker in await self.ledger.workers():
                await self._settle_worker(worker, now)
                await asyncio.sleep(0)
            await self._withdraw_fees()

    async def refresh_root(self) -> None:
        config = await fetch_root_config(self.chain, self.root)
        old = self.root_config
        if old is not None and config.params_version != old.params_version:
            # A new params version means a new proxy contract (reference §4.9): this one keeps its
            # params until it is closed, and the owner (proxy.upgrade) moves to the new one.
            self.root_config = old
            if self._on_new_params is not None:
                self._on_new_params(config)
                return
            log.warning(
                "root params version %d → %d: the proxy contract must be redeployed",
                old.params_version,
                config.params_version,
            )
            return
        self.root_config = config
        self._root_read_at = time.time()
        self._on_root(config)

    # -- state commits ---------------------------------------------------------------------------

    async def commit_now(self, now: float) -> None:
        """Anchor everything billed so far now (before a close request), due or not."""
        async with self._lock:
            await self._anchor(now, force=True)

    async def _anchor(self, now: float, *, force: bool = False) -> None:
        assert self.proxy_address is not None
        await self._mark_seen()
        total = (await self.ledger.statistics()).adjusted_tokens
        dirty = total != self._committed_total
        due = self.policy.commit_due(now=int(now), last_commit_at=self._last_commit_at, dirty=dirty)
        if not (due or force):
            return
        seqno = await self.ledger.bump_seqno(now)
        # With commit_hash set the commit binds the session to what the proxy publishes (reputation).
        posted = (
            self.session_hash
            if self.commit_hash is None
            else await self.commit_hash(seqno, self.session_hash)
        )
        self._posted_hashes = [*self._posted_hashes[-15:], posted]
        msg = sign_state_commit(self.key, target=self.proxy_address, seqno=seqno, session_hash=posted)
        await post_signed(self.wallet, msg)
        self.stats.commits_posted += 1
        self._last_commit_at = int(now)
        self._committed_total = total
        await self._mark_seen()

    async def _mark_seen(self) -> None:
        assert self.proxy_address is not None
        state = await read_proxy_state(self.chain, self.proxy_address)
        if state.session_hash in self._posted_hashes and await self.ledger.mark_committed(
            state.commit_seqno, state.session_hash
        ):
            self.stats.commits_seen += 1

    # -- clients ---------------------------------------------------------------------------------

    def client_contract(self, owner: Address) -> Address:
        assert self.root_config is not None and self.proxy_address is not None
        return client_contract(owner, self.proxy_address, self.key.public, self.contract_params).address

    async def register_client(self, client: str, proof: Any, tls_public_key: bytes) -> bool:
        """Bind a connecting client to its contract; False unless ``client`` is a wallet address and
        ``proof`` shows the client's TLS key speaks for that wallet (``cocoon.node.ownership``)."""
        owner = parse_address(client)
        if owner is None:
            return False
        if not verify_owner_proof(proof, tls_public_key, _wallet_address, owner.to_str()):
            return False
        await self.ledger.upsert_client(
            client,
            contract=self.client_contract(owner).to_str(),
            price_per_token=self.params.price_per_token,
            now=time.time(),
        )
        return True

    async def refresh_client(self, client: str) -> None:
        """Read one client's contract now (on connect and before a balance answer)."""
        async with self._lock:
            await self._read_client(await self.ledger.client_totals(client), time.time())

    async def _read_client(self, totals: ClientTotals, now: float) -> tuple[ClientTotals, int]:
        address = parse_address(totals.contract) if totals.contract else None
        if address is None:
            return totals, STATE_ACTIVE
        try:
            st = await read_client_state(self.chain, address)
            balance, stake, charged, state = st.balance, st.stake, st.tokens_used, st.state
        except AccountNotFound:
            balance = stake = charged = 0
            state = STATE_ACTIVE
        if (balance, stake, charged) == (totals.balance_nano, totals.stake_nano, totals.charged_tokens):
            return totals, state  # unchanged: spare the store a durable write
        # Raises StoreRolledBack when the chain charged more than this store ever billed.
        new = await self.ledger.set_client_chain_state(
            totals.client, balance=balance, stake=stake, charged_tokens=charged, now=now
        )
        return new, state

    async def _settle_client(self, totals: ClientTotals, now: float) -> None:
        await self._settle_client_on_chain(totals, now)
        if self._on_charged is not None and self._statement_moved("client:" + totals.client, totals):
            await self._on_charged(totals.client)

    def _statement_moved(self, key: str, totals: ClientTotals | WorkerTotals) -> bool:
        """True once per new committed total: the payee gets each statement once (and at connect)."""
        if totals.committed_tokens <= 0 or self._stated.get(key) == totals.committed_tokens:
            return False
        self._stated[key] = totals.committed_tokens
        return True

    async def _settle_client_on_chain(self, totals: ClientTotals, now: float) -> None:
        totals, state = await self._read_client(totals, now)
        target = parse_address(totals.contract) if totals.contract else None
        if target is None:
            return
        closing = state == STATE_CLOSING
        if (
            closing
            and self.settings.grant_refunds
            and totals.reserved_nano == 0
            and totals.committed_tokens == totals.tokens
        ):
            # Nothing running, everything anchored: the final charge and the refund in one message.
            msg = sign(
                self.key, Op.CLIENT_GRANT_REFUND_SIGNED, target=target, counter=totals.committed_tokens
            )
            await post_signed(self.wallet, msg)
            self.stats.refunds_granted += 1
            await self._read_client(totals, now)
            return
        owed = (totals.committed_tokens - totals.charged_tokens) * totals.price_per_token
        if owed <= 0 or not self.policy.client_charge_due(owed, closing=closing):
            return
        msg = sign(self.key, Op.CLIENT_CHARGE_SIGNED, target=target, counter=totals.committed_tokens)
        await post_signed(self.wallet, msg)
        self.stats.charges_posted += 1
        await self._read_client(totals, now)

    async def _withdraw_fees(self) -> None:
        """Move the proxy contract's fees to our wallet once they are worth it."""
        threshold = self.settings.withdraw_fees_above_nano
        assert self.proxy_address is not None
        if not threshold:
            return
        state = await read_proxy_state(self.chain, self.proxy_address)
        if (
            state.balance >= threshold
            and self.policy.fee_estimate <= state.balance * self.policy.max_fee_ratio
        ):
            await send_proxy_op(self.wallet, self.proxy_address, Op.PROXY_PAYOUT)
            self.stats.fees_withdrawn += 1

    # -- workers ---------------------------------------------------------------------------------

    def worker_contract(self, owner: Address) -> Address:
        assert self.root_config is not None and self.proxy_address is not None
        return worker_contract(owner, self.proxy_address, self.key.public, self.contract_params).address

    async def _read_worker(self, totals: WorkerTotals, now: float) -> WorkerTotals:
        address = parse_address(totals.contract) if totals.contract else None
        if address is None:
            return totals
        try:
            paid = (await read_worker_state(self.chain, address)).tokens
        except AccountNotFound:
            paid = 0  # never paid: the first payout deploys it
        if paid == totals.paid_tokens:
            return totals  # unchanged: spare the store a durable write
        return await self.ledger.set_worker_chain_state(totals.worker, paid_tokens=paid, now=now)

    async def _settle_worker(self, totals: WorkerTotals, now: float) -> None:
        await self._settle_worker_on_chain(totals, now)
        if self._statement_moved("worker:" + totals.worker, totals):
            await self._on_paid(totals.worker)

    async def _settle_worker_on_chain(self, totals: WorkerTotals, now: float) -> None:
        totals = await self._read_worker(totals, now)
        owner = parse_address(totals.worker)
        if owner is None or not totals.contract:
            return
        idle = self._worker_tokens.get(totals.worker) == totals.tokens
        self._worker_tokens[totals.worker] = totals.tokens
        fee = self.params.worker_fee_per_token
        unpaid = (totals.committed_tokens - totals.paid_tokens) * fee
        if unpaid <= 0 or not self.policy.worker_payout_due(unpaid, idle=idle):
            return
        assert self.root_config is not None and self.proxy_address is not None
        deployable = worker_contract(owner, self.proxy_address, self.key.public, self.contract_params)
        deployed = (await self.chain.get_account(deployable.address)).active
        msg = sign(
            self.key, Op.WORKER_PAYOUT_SIGNED, target=deployable.address, counter=totals.committed_tokens
        )
        await post_signed(self.wallet, msg, state_init=None if deployed else deployable.state_init)
        self.stats.payouts_posted += 1
        totals = await self._read_worker(totals, now)
        await self._on_paid(totals.worker)

    # -- statements: the signed cumulative messages their payees hold ------------------------------

    def worker_statement(self, totals: WorkerTotals) -> dict[str, str] | None:
        """A signed payout for every committed token of this worker owner (None before the first)."""
        owner = parse_address(totals.worker)
        if owner is None or not totals.contract or totals.committed_tokens <= 0:
            return None
        assert self.root_config is not None and self.proxy_address is not None
        deployable = worker_contract(owner, self.proxy_address, self.key.public, self.contract_params)
        msg = sign(
            self.key, Op.WORKER_PAYOUT_SIGNED, target=deployable.address, counter=totals.committed_tokens
        )
        return self._statement(msg, state_init_boc(deployable.state_init))

    def client_statement(self, totals: ClientTotals) -> dict[str, str] | None:
        """A signed charge for every committed token of this client (None before the first)."""
        target = parse_address(totals.contract) if totals.contract else None
        if target is None or totals.committed_tokens <= 0:
            return None
        msg = sign(self.key, Op.CLIENT_CHARGE_SIGNED, target=target, counter=totals.committed_tokens)
        return self._statement(msg, b"")

    def check_held(self, totals: ClientTotals | WorkerTotals, held: object) -> None:
        """A payee's report of the statement it holds from us, against our books (reference
        ``compareBalanceWithProxy``, from our side): raises :class:`HeldMismatch` and alerts when we
        never signed it (the payee claims too much) or signed more than our books hold (we lost writes)."""
        if held is None:
            return  # holds nothing from this contract yet
        assert self.proxy_address is not None
        try:
            check_payee_report(
                held,
                signing_key=self.key.public,
                proxy_contract=self.proxy_address.to_str(),
                target=totals.contract,
                books_tokens=totals.tokens,
            )
        except HeldMismatch as exc:
            self.stats.alerts.append(str(exc))
            log.error("ALERT: refusing a payee's link: %s", exc)
            raise

    def _statement(self, msg: Any, state_init: bytes) -> dict[str, str]:
        assert self.proxy_address is not None
        return statement_params(
            proxy_contract=self.proxy_address.to_str(),
            signing_key=self.key.public,
            message=msg,
            state_init=state_init,
        )

    # -- what peers see --------------------------------------------------------------------------

    def announce(self) -> dict[str, Any]:
        """Chain facts for the handshake: clients derive their contract from these."""
        assert self.proxy_address is not None
        return {
            "root": self.root.to_str(),
            "proxy_contract": self.proxy_address.to_str(),
            "signing_key": self.key.public.hex(),
        }

    def statistics(self) -> dict[str, Any]:
        return {
            "root": self.root.to_str(),
            "proxy_contract": self.proxy_address.to_str() if self.proxy_address else "",
            "ticks": self.stats.ticks,
            "errors": self.stats.errors,
            "last_error": self.stats.last_error,
            "commits_posted": self.stats.commits_posted,
            "commits_seen": self.stats.commits_seen,
            "charges_posted": self.stats.charges_posted,
            "payouts_posted": self.stats.payouts_posted,
            "refunds_granted": self.stats.refunds_granted,
            "fees_withdrawn": self.stats.fees_withdrawn,
            "alerts": list(self.stats.alerts[-20:]),
        }
