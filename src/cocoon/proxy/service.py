"""The proxy: admits attested workers and clients, routes each request, meters and bills it.

Two RA-TLS listeners (workers dial one, clients the other) and an operator HTTP port (``/stats``,
``/metrics``). Each client request is run by :class:`~cocoon.proxy.relay.Relay` (the driver of the
sans-IO :class:`~cocoon.proxy.attempt.Attempt`): reserve funds, pick a worker by expected latency and
reputation, relay the answer, bill it within the reservation *before* the final message releases it.

With ``config.chain`` the proxy runs on a TON chain (:mod:`cocoon.proxy.chain_sync`): prices and the
allowed worker images / models come from the root contract, client funds from client contracts, and
a background loop anchors the ledger on chain, charges clients and pays workers. Without it, clients
get ``test_credit_nano`` and prices come from ``config.pricing``.

Durable writes go through :class:`~cocoon.proxy.ledger.AsyncLedger` (one writer thread), on the event
loop only while it serves at most one request (nothing else waits); ``Proxy.ledger`` is the synchronous
store underneath, for reads and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cocoon import net, wire
from cocoon.chain import Chain, RootConfig
from cocoon.node.evidence import asign_evidence, challenge_nonce, collect_evidence
from cocoon.node.receipt import countersign
from cocoon.node.refusal import refuse_for_good
from cocoon.node.renewal import RENEWED, RenewalPusher, accept_renewal
from cocoon.node.service import Service
from cocoon.node.statements import STATEMENT, HeldMismatch
from cocoon.node.trust import NodeTrust, close_refused, make_policy, root_allowlist
from cocoon.node.worker_update import WORKER_UPDATE
from cocoon.proxy import errors as perr
from cocoon.proxy.admission import parse_worker_announce, payee_key
from cocoon.proxy.attempt import AttemptSettings
from cocoon.proxy.chain_sync import ChainSync, parse_address, price_params
from cocoon.proxy.config import ProxyConfig
from cocoon.proxy.contract_record import current_contract, current_ledger_path
from cocoon.proxy.integrity import Integrity
from cocoon.proxy.ledger import AsyncLedger, BillingLedger, LedgerStatistics
from cocoon.proxy.metering import UsageAudit
from cocoon.proxy.metrics import stats_json
from cocoon.proxy.pricing import PriceParams, TokenCounts, price
from cocoon.proxy.relay import CappedBill, Relay, RelaySettings
from cocoon.proxy.reputation import ReputationBook, TrackedRegistry
from cocoon.proxy.retention import prune_loop
from cocoon.proxy.selection import RegistryStatistics, WorkerRecord, market_view
from cocoon.proxy.slash_chain import ChainSlashing
from cocoon.proxy.stats_http import start_stats_server
from cocoon.proxy.upgrade import ContractUpgrade
from cocoon.proxy.worker_updates import WorkerUpdates

__all__ = ["Proxy"]

log = logging.getLogger(__name__)

# Payment and statement notices go out at most once per payee in this interval (the latest totals).
NOTICE_INTERVAL_S = 0.2


class Proxy(Service):
    role = "proxy"

    def __init__(
        self, config: ProxyConfig, *, chain: Chain | None = None, links: net.Links | None = None
    ) -> None:
        """``chain``: an open chain to share (in-process networks); else ``config.chain`` opens its own.
        ``links``: how its ports accept links (TCP unless given; a ``net.MemoryHub`` in tests)."""
        super().__init__(logger=log)
        self.config = config
        self._links = links
        self._chain = chain
        self.chain_sync: ChainSync | None = None  # set when config.chain is given
        self.trust: NodeTrust | None = None
        self.books: AsyncLedger | None = None
        self.registry = TrackedRegistry(ReputationBook())  # selection, keeping each worker's lasting record
        self.upgrade = ContractUpgrade(self, config.home)  # to new contracts when the root's params change
        self.worker_updates = WorkerUpdates(self.registry)  # workers' live price / pause notices
        self.draining = False  # the operator's drain (dashboard): new requests refused, running ones finish
        self.params = PriceParams(**config.pricing.model_dump())
        self.allowed_model_hashes: frozenset[bytes] | None = None
        self.allowed_model_names: dict[bytes, str] = {}  # the root's name for each allowed model hash
        self.audit = UsageAudit()
        self._worker_links: dict[str, net.NodeConnection] = {}
        self._client_links: dict[int, net.NodeConnection] = {}
        self._worker_owner: dict[str, str] = {}  # worker id → payee (owner address)
        self._conn_worker: dict[int, str] = {}  # connection id → worker id
        self._payees_to_notify: set[str] = set()
        self._clients_to_notify: set[str] = set()
        self._notify_due = asyncio.Event()
        self.counters = dict.fromkeys(
            ("requests", "succeeded", "failed", "retried", "rejected", "cancelled", "capped"), 0
        )
        self.relay = Relay(
            registry=self.registry,
            links=self._worker_links.get,
            books=self._books,
            payee=lambda worker_id: self._worker_owner.get(worker_id, worker_id),
            params=lambda: self.params,
            on_paid=self._paid,
            sign_receipt=self._countersign,
            settings=RelaySettings(
                first_byte_timeout_s=config.first_byte_timeout_s,
                drain_s=config.cancel_drain_s,
                attempt=AttemptSettings(
                    max_attempts=config.max_attempts,
                    progress_every_tokens=config.progress_every_tokens,
                    progress_every_s=config.progress_every_s,
                ),
            ),
            counters=self.counters,
            audit=self.audit,
        )
        self.integrity = Integrity(  # lasting reputation, spot checks, evidence and slashes
            registry=self.registry,
            links=self._worker_links.get,
            books=self._books,
            sign_key=lambda: self.trust.identity.private_key if self.trust is not None else None,
            owner_of=lambda worker_id: self._worker_owner.get(worker_id, worker_id),
            capped=self.relay.capped,
            spawn=lambda work: self.spawn(work, name="integrity"),
            settings=config.integrity,
        )
        self.worker_port = config.worker_port
        self.client_port = config.client_port
        self.stats_port = config.stats_port

    @property
    def ledger(self) -> BillingLedger | None:
        """The synchronous store (reads, tests); writes go through :attr:`books`."""
        return None if self.books is None else self.books.sync

    def _quiet(self) -> bool:
        """One request in flight at most: its bill may be synced on the loop (AsyncLedger.quiet)."""
        return self.relay.in_flight <= 1

    def _books(self) -> AsyncLedger:
        if self.books is None:
            raise perr.ProxyNotReady("the billing store is not open")
        return self.books

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        # The store makes the home (and missing parents) 0700 and its files 0600.
        books = self.books = AsyncLedger.open(current_ledger_path(self.config.home))
        books.quiet = self._quiet
        stack.push_async_callback(books.aclose)
        stack.push_async_callback(_quietly(self.upgrade.aclose))  # stores and syncs a move opened
        # Requests still reserved belong to a previous process that died before settling them: each is
        # charged the progress it recorded of what was relayed (nothing when none), never more.
        now = time.time()
        stale = await books.release_stale(now=now, older_than=now)
        if stale:
            log.warning("ended %d requests left reserved by a previous run", len(stale))
        await self.integrity.open()  # workers' records and suspensions, before any worker connects
        stack.push_async_callback(_quietly(self.integrity.save))  # at stop, once the bills are written
        self.trust = NodeTrust(self.config.tee, home=self.config.home, role="proxy", links=self._links)
        self.spawn(self.trust.keep_fresh(), name="cert-renewal")
        links = lambda: [*self._worker_links.values(), *self._client_links.values()]  # noqa: E731
        self.spawn(RenewalPusher(self.trust, links).run(), name="renewal-push")  # peers re-verify it
        if self.config.chain is not None:
            # Prices, allowed hashes and the rollback check come from the chain before serving.
            sync = self.chain_sync = ChainSync(
                self.config.chain,
                home=self.config.home,
                ledger=books,
                on_root=self._apply_root,
                on_paid=self._queue_payment_notice,
                on_charged=self._queue_charge_notice,
                chain=self._chain,
                on_new_params=self.upgrade.start,  # the root's params changed: move to new contracts
                contract_address=parse_address(current_contract(self.config.home) or ""),
            )
            stack.push_async_callback(_quietly(sync.aclose))
            sync.commit_hash = self.integrity.anchor  # commits anchor the published worker statistics
            await sync.open()
            self.integrity.use_chain(ChainSlashing(sync))
            self.upgrade.on_moved = lambda new: self.integrity.use_chain(ChainSlashing(new))
            self.upgrade.resume(sync)  # contracts a previous run left closing
        # In-flight answers finish their bills before the store closes (registered after it: runs first).
        stack.push_async_callback(self.relay.wait_idle)
        await self._serve_ports(stack)
        stats = await start_stats_server(self, self.config.stats_host, self.config.stats_port)
        stack.push_async_callback(_quietly(stats.aclose))
        self.stats_port = stats.port
        self.spawn(self._notify_payments(), name="payment-notices")
        self.spawn(self.integrity.run(), name="integrity")
        self.spawn(prune_loop(books, self.config.request_history_days), name="history-pruning")
        if self.chain_sync is not None:
            self.spawn(self.chain_sync.run(), name="chain-sync")

    async def _serve_ports(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.trust is not None
        info = self.announce()
        # Worker links are judged by the node's policy, and re-judged whenever the root changes.
        workers = await self.trust.serve(
            self.config.host,
            self.config.worker_port,
            role=wire.Role.PROXY,
            info=info,
            handler=_WorkerSide(self),
        )
        stack.push_async_callback(_quietly(workers.aclose))
        self.worker_port = workers.port
        client_policy = make_policy(
            self.config.client_peer_policy,
            self.config.tee,
            sim_home=self.config.tee.sim_home or self.config.home,
            home=self.config.home,
            allowed=None,
        )
        clients = await self.trust.serve(
            self.config.host,
            self.config.client_port,
            role=wire.Role.PROXY,
            info=info,
            handler=_ClientSide(self),
            policy=client_policy,
        )
        stack.push_async_callback(_quietly(clients.aclose))
        self.client_port = clients.port
        self.upgrade.serve_on([workers, clients])  # a move to new contracts re-announces on both

    def _apply_root(self, config: RootConfig) -> None:
        """A root config was read on chain: its prices, allowed worker images and models apply now."""
        self.params = price_params(config)
        self.allowed_model_hashes = config.model_hashes or None
        self.allowed_model_names = dict(config.models)
        self.registry.set_service_classes(config.service_classes)  # what requests may ask for
        if self.trust is not None:
            # New worker links are judged by the root's images and models at once; live ones it no
            # longer allows are closed.
            refused = self.trust.set_root(root_allowlist("proxy", config))
            if refused:
                self.spawn(close_refused(refused), name="root-refused")

    def announce(self) -> dict[str, Any]:
        assert self.trust is not None
        info: dict[str, Any] = {
            "owner_address": self.config.owner_address,
            "public_key": self.trust.identity.public_key.hex(),
            "price_per_token": self.params.price_per_token,
        }
        if self.chain_sync is not None:
            info["chain"] = self.chain_sync.announce()
        return info

    # -- workers ---------------------------------------------------------------------------------

    async def admit_worker(self, conn: net.NodeConnection) -> WorkerRecord:
        attestation = conn.peer.attestation
        announce = parse_worker_announce(
            conn.peer.info,
            attested_image=getattr(attestation, "image_hash", None),
            attested_model=getattr(attestation, "model_hash", None),
            allowed_model_hashes=self.allowed_model_hashes,
            connection_id=conn.id,
            now=time.time(),
            model_names=self.allowed_model_names,
            attestation=attestation,
        )
        record = announce.record
        if self.chain_sync is not None:
            await self._register_worker_payee(announce.owner)
            await self.integrity.check_stake(announce.owner)  # the root's collateral, free of pending slashes
        known = self._worker_links.get(record.worker_id)
        if known is not None and not known.closed:  # a closed one is a reconnect not yet dropped
            raise net.HandshakeRefused(f"worker {record.worker_id} is already connected")
        self.registry.add(record)
        self._worker_links[record.worker_id] = conn
        self._worker_owner[record.worker_id] = announce.owner or record.worker_id
        self._conn_worker[conn.id] = record.worker_id
        return record

    async def _register_worker_payee(self, owner: str) -> None:
        """On a chain a worker is paid through its worker contract: its owner must be a TON address."""
        assert self.chain_sync is not None
        address = parse_address(owner)
        if address is None:
            raise refuse_for_good("owner_address must be the worker's TON wallet address")
        contract = self.chain_sync.worker_contract(address).to_str()  # type: ignore[no-untyped-call]
        await self._books().upsert_worker(owner, contract=contract, now=time.time())

    def _paid(self, owner: str) -> None:
        """A bill or a payout moved ``owner``'s money: tell its workers, off the answer's path."""
        self._payees_to_notify.add(owner)
        self._notify_due.set()

    async def _queue_payment_notice(self, owner: str) -> None:
        self._paid(owner)

    async def _queue_charge_notice(self, client: str) -> None:
        self._clients_to_notify.add(client)
        self._notify_due.set()

    async def _notify_payments(self) -> None:
        """One notifier, so notices reach a worker in order and each carries the totals of its send."""
        while True:
            await self._notify_due.wait()
            self._notify_due.clear()
            while self._payees_to_notify:
                await self.notify_worker_payment(self._payees_to_notify.pop())
            while self._clients_to_notify:
                await self.notify_client_statement(self._clients_to_notify.pop())
            # The first bill is told at once; those of the next moment share one notice with the
            # latest totals (notices are cumulative), not one read, message and decode per answer.
            await asyncio.sleep(NOTICE_INTERVAL_S)

    async def notify_worker_payment(self, owner: str) -> None:
        """Tell the worker(s) paid to ``owner`` what they earned and what was paid out (cumulative)."""
        try:
            totals = await self._books().worker_totals(owner)
        except perr.LedgerError:
            return
        params = {
            "earned_nano": totals.earnings_nano,
            "paid_nano": totals.paid_tokens * self.params.worker_fee_per_token,
            "adjusted_tokens": totals.tokens,
            "committed_tokens": totals.committed_tokens,
            "paid_tokens": totals.paid_tokens,
            "worker_contract": totals.contract,
            "worker_fee_per_token": self.params.worker_fee_per_token,
        }
        if self.config.chain is not None:  # when payouts are posted: the owner's next-payout estimate
            params["payout_threshold_nano"] = self.config.chain.min_worker_payout_nano
            params["idle_payout_threshold_nano"] = self.config.chain.min_idle_worker_payout_nano
        statement = self.chain_sync.worker_statement(totals) if self.chain_sync is not None else None
        for worker_id, payee in list(self._worker_owner.items()):
            link = self._worker_links.get(worker_id)
            if payee == owner and link is not None and not link.closed:
                with contextlib.suppress(net.NetError):
                    await link.notify("payment", params)
                    if statement is not None:  # the signed IOU the worker can post itself
                        await link.notify(STATEMENT, statement)

    async def notify_client_statement(self, client: str) -> None:
        """Hand a client its latest signed cumulative charge (it holds it against a rollback)."""
        if self.chain_sync is None:
            return
        try:
            statement = self.chain_sync.client_statement(await self._books().client_totals(client))
        except perr.LedgerError:
            return
        if statement is None:
            return
        for link in list(self._client_links.values()):
            if not link.closed and self.client_id(link) == client:
                with contextlib.suppress(net.NetError):
                    await link.notify(STATEMENT, statement)

    async def worker_statement(self, conn: net.NodeConnection, held: object = None) -> Mapping[str, Any]:
        """The statement query of a worker link: its owner's latest signed payout ({} when none),
        after checking the one it reports holding (``held``) against our books."""
        owner = self._worker_owner.get(self._conn_worker.get(conn.id, ""))
        if self.chain_sync is None or owner is None:
            return {}
        try:
            totals = await self._books().worker_totals(owner)
        except perr.LedgerError:
            return {}
        self._check_held(conn, totals, held)
        return self.chain_sync.worker_statement(totals) or {}

    def _check_held(self, conn: net.NodeConnection, totals: Any, held: object) -> None:
        """A payee whose held statement disagrees with our books is refused (the alert is raised)."""
        assert self.chain_sync is not None
        try:
            self.chain_sync.check_held(totals, held)
        except HeldMismatch as exc:
            self.drop_worker(conn)  # never chosen again on this link; the link closes after the answer
            self.spawn(conn.aclose(f"held statement refused: {exc}"), name="held-refused")
            raise net.QueryFailed(wire.ErrorCode.BAD_REQUEST, str(exc)) from exc

    async def client_statement(self, conn: net.NodeConnection, held: object = None) -> Mapping[str, Any]:
        if self.chain_sync is None:
            return {}
        try:
            totals = await self._books().client_totals(self.client_id(conn))
        except perr.LedgerError:
            return {}
        self._check_held(conn, totals, held)
        return self.chain_sync.client_statement(totals) or {}

    def _countersign(
        self,
        worker_part: object,
        worker_id: str,
        request_id: bytes,
        coefficient: int,
        adjusted: int,
        cost: int,
        relayed_sha256: str | None = None,
    ) -> Mapping[str, Any] | None:
        link = self._worker_links.get(worker_id)
        if self.trust is None or link is None:
            return None
        # Countersigned only if the worker's key (the one attested on its link) signed it.
        receipt = countersign(
            self.trust.identity.private_key,
            worker_part,
            worker_attestation=link.peer.attestation,
            request_id=request_id,
            coefficient=coefficient,
            adjusted_tokens=adjusted,
            cost_nano=cost,
        )
        if receipt is not None:  # a capped bill becomes evidence; an accepted one, a slash receipt
            self.integrity.answered(request_id.hex(), worker_id, worker_part, adjusted, relayed_sha256)
        return receipt

    def drop_worker(self, conn: net.NodeConnection) -> None:
        worker_id = self._conn_worker.pop(conn.id, None)
        if worker_id is None or self._worker_links.get(worker_id) not in (None, conn):
            return  # (a newer link of that worker took over)
        self._worker_links.pop(worker_id, None)
        self.registry.remove(worker_id)
        self.worker_updates.forget(worker_id)

    # -- clients ---------------------------------------------------------------------------------

    def client_id(self, conn: net.NodeConnection) -> str:
        owner = str(conn.peer.info.get("owner_address", ""))
        if owner:
            return payee_key(owner)
        key = getattr(conn.peer.attestation, "public_key", b"") or b""
        return "key:" + key.hex()

    async def admit_client(self, conn: net.NodeConnection) -> None:
        client = self.client_id(conn)
        if self.chain_sync is not None:
            # Funds come from the client contract only: no test credit on a chain.
            tls_key = getattr(conn.peer.attestation, "public_key", b"") or b""
            proof = conn.peer.info.get("owner_proof")
            if not await self.chain_sync.register_client(client, proof, tls_key):
                raise net.HandshakeRefused(
                    "owner_address must be the client's TON wallet address, with a valid owner_proof"
                )
        else:
            await self._books().ensure_client(client, credit=self.config.test_credit_nano, now=time.time())
        self._client_links[conn.id] = conn

    def models(self) -> list[dict[str, Any]]:
        by_model: dict[str, list[WorkerRecord]] = {}
        for record in self.registry.records():
            by_model.setdefault(record.model, []).append(record)
        out = []
        one_m = 1_000_000
        for model, records in sorted(by_model.items()):
            coefficients = sorted(r.coefficient for r in records)
            cheapest = coefficients[0]
            prompt = price(TokenCounts(prompt=one_m), cheapest, self.params).client_cost_nano
            completion = price(TokenCounts(completion=one_m), cheapest, self.params).client_cost_nano
            # nanoTON per 1M tokens at the cheapest worker, per class.
            out.append(
                {
                    "id": model,
                    "workers": len(records),
                    "coefficients": coefficients,
                    # What the model can do here: the union of its workers' announced capabilities.
                    "capabilities": sorted({c for r in records for c in r.capabilities}),
                    "price_per_1m": {"prompt": prompt, "completion": completion},
                    # What a reservation is priced at (clients bound their budgets with it).
                    "price_per_token": self.params.price_per_token,
                    # Attested hardware, service classes (admitted by measurement) and measured numbers.
                    **market_view(self.registry, model, time.time()),
                }
            )
        return out

    async def handle_request(self, client_conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        if self.draining:
            await stream.send_error(wire.ErrorCode.BUSY, "this proxy is draining: try another proxy")
            return
        if self.upgrade.moving:  # no contract to bill on until the move is done (proxy/upgrade.py)
            await stream.send_error(wire.ErrorCode.BUSY, self.upgrade.why)
            return
        await self.relay.handle(self.client_id(client_conn), stream)

    # -- what the operator sees (stats_http.StatsSource) -------------------------------------------

    def ledger_statistics(self) -> LedgerStatistics:
        return self._books().sync.statistics()

    def registry_statistics(self) -> RegistryStatistics:
        return self.registry.statistics(time.time())

    def state_name(self) -> str:
        return self.state.value

    def request_counters(self) -> Mapping[str, int]:
        return dict(self.counters)

    def statistics(self) -> dict[str, Any]:
        ledger = self._books().sync
        out = stats_json(
            ledger.statistics(),
            self.registry.statistics(time.time()),
            clients=ledger.clients(),
            worker_totals=ledger.workers(),
        )
        out.update(
            {
                "state": self.state.value,
                "image_hash": (self.trust.image_hash or b"").hex() if self.trust else "",
                "clients_connected": len(self._client_links),
                "accepting_requests": not self.draining,
                "requests": dict(self.counters),
                "models": self.models(),
                "capped": [_capped_json(c) for c in self.relay.capped.recent],
                "reputation": self.integrity.view(),  # lasting per-worker record, spot checks, evidence
            }
        )
        if self.chain_sync is not None:
            out["chain"] = self.chain_sync.statistics()
            out["upgrade"] = self.upgrade.statistics()  # a move to new contracts, contracts still closing
        return out


def _capped_json(capped: CappedBill) -> dict[str, Any]:
    return {
        "request_id": capped.request_id,
        "worker_id": capped.worker_id,
        "claimed": None if capped.claimed is None else dataclasses.asdict(capped.claimed),
        "billed": dataclasses.asdict(capped.billed),
        "reasons": list(capped.reasons),
        "at": capped.at,
    }


def _quietly(close: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A clean-up whose failure is logged, not raised: the other clean-ups must still run."""

    async def run() -> None:
        try:
            await close()
        except Exception as exc:
            log.warning("clean-up %s failed: %s", getattr(close, "__qualname__", close), exc)

    return run


class _WorkerSide(net.NullHandler):
    """The proxy's worker port: workers announce themselves and answer; they send no requests."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if conn.peer.role is not wire.Role.WORKER:
            raise refuse_for_good("this port is for workers")
        record = await self.proxy.admit_worker(conn)
        log.info("worker %s joined: %s ×%s", record.worker_id, record.model, record.coefficient / 1000)

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if method == STATEMENT:
            return await self.proxy.worker_statement(conn, params.get("held"))
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, f"unknown query {method}")

    async def on_notify(self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        worker_id = self.proxy._conn_worker.get(conn.id)
        if method == RENEWED and worker_id is not None and self.proxy.trust is not None:
            # Re-verified like a handshake; the worker then counts as attested now, not at connect.
            attested = lambda at: self.proxy.registry.update_attestation(worker_id, at)  # noqa: E731
            trust = self.proxy.trust
            if await accept_renewal(trust.policy, conn, params, now=time.time(), attested=attested):
                keys = self.proxy.relay.sealed_keys  # its new sealing keys, for clients' worker_keys
                with contextlib.suppress(ValueError):
                    keys.accept(worker_id, conn, params.get("certificate"), trust.verify_peer)
        elif method == WORKER_UPDATE and worker_id is not None:
            try:  # a new coefficient / capacity, or the worker pausing or resuming itself
                log.info("worker %s: %s", worker_id, self.proxy.worker_updates.apply(worker_id, params))
            except ValueError as exc:
                log.warning("worker %s sent a bad update (ignored): %s", worker_id, exc)

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.proxy.drop_worker(conn)


class _ClientSide(net.NullHandler):
    """The proxy's client port: requests, and the control queries of the client API."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if conn.peer.role is not wire.Role.CLIENT:
            raise net.HandshakeRefused("this port is for clients")
        await self.proxy.admit_client(conn)
        if self.proxy.chain_sync is not None:
            await self.proxy.chain_sync.refresh_client(self.proxy.client_id(conn))

    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        await self.proxy.handle_request(conn, stream)

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        proxy = self.proxy
        if method == "worker_stats":  # signed per-worker statistics, and the ones anchored on chain
            return await proxy.integrity.published(params)
        if method == "time":
            return {"time": time.time()}
        if method == "models":
            return {"models": proxy.models()}
        if method == "balance":
            if proxy.chain_sync is not None:  # the app may just have topped up: read its contract now
                await proxy.chain_sync.refresh_client(proxy.client_id(conn))
            return dataclasses.asdict(await proxy._books().client_totals(proxy.client_id(conn)))
        if method == "attestation":
            return await self._attestation(params)
        if method == "worker_keys" and proxy.trust is not None:  # sealed requests (proxy/sealed.py)
            records = proxy.registry.records()
            return await proxy.relay.sealed_keys.answer(params, records, proxy.trust.verify_peer, time.time())
        if method == STATEMENT:
            return await proxy.client_statement(conn, params.get("held"))
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, f"unknown query {method}")

    async def _attestation(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Fresh evidence for the app's nonce: the proxy's, and each worker's (asked now)."""
        proxy = self.proxy
        nonce = challenge_nonce(params)
        evidence = await collect_evidence(dict(proxy._worker_links), nonce)
        report: dict[str, Any] = {
            "proxy": {
                "image_hash": (proxy.trust.image_hash or b"").hex() if proxy.trust else "",
                "public_key": proxy.trust.identity.public_key.hex() if proxy.trust else "",
            },
            "workers": [
                {
                    "worker_id": r.worker_id,
                    "model": r.model,
                    "image_hash": r.image_hash,
                    "model_hash": r.model_hash,
                    "attestation": _attestation_json(proxy._worker_links.get(r.worker_id)),
                    "evidence": evidence.get(r.worker_id),
                }
                for r in proxy.registry.records()
            ],
            "nonce": nonce,
            "time": int(time.time()),
        }
        if proxy.trust is not None:
            claims = {"role": "proxy", "workers": sorted(evidence)}
            report["evidence"] = await asign_evidence(
                proxy.trust.identity, nonce=nonce, now=int(time.time()), claims=claims
            )
        return report

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.proxy._client_links.pop(conn.id, None)


def _attestation_json(conn: net.NodeConnection | None) -> dict[str, Any]:
    if conn is None:
        return {}
    attestation = conn.peer.attestation
    to_json = getattr(attestation, "to_json", None)
    return dict(to_json()) if callable(to_json) else {}
