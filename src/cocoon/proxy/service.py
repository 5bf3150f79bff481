"""The proxy: admits attested workers and clients, routes each request, meters and bills it.

Two RA-TLS listeners (workers dial one, clients the other) and an operator HTTP port (``/stats``,
``/metrics``). For each client request the proxy reserves funds, picks a worker by expected latency
and reputation, and relays the answer. A failure before the first byte is retried on another
worker; after it, the client gets a clean error and pays only for what it received. Usage is
checked against what was actually relayed, priced, and written to the ledger *before* the final
message releases the answer.

With ``config.chain`` the proxy runs on a TON chain (:mod:`cocoon.proxy.chain_sync`): prices and the
allowed worker images / models come from the root contract, client funds from client contracts, and
a background loop anchors the ledger on chain, charges clients and pays workers. Without it, clients
get ``test_credit_nano`` and prices come from ``config.pricing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cocoon import net, wire
from cocoon.node.lifecycle import ServiceState, check_can_start
from cocoon.node.receipt import countersign
from cocoon.node.trust import NodeTrust, make_policy
from cocoon.proxy import errors as perr
from cocoon.proxy.config import ProxyConfig
from cocoon.proxy.ledger import BillingLedger
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.metrics import stats_json
from cocoon.proxy.pricing import Charge, PriceParams, TokenCounts, price, reservation
from cocoon.proxy.selection import WorkerRecord, WorkerRegistry

if TYPE_CHECKING:  # cocoon.chain loads the TVM emulator: only when a chain is configured
    from cocoon.chain import Chain
    from cocoon.proxy.chain_sync import ChainSync

__all__ = ["Proxy"]

log = logging.getLogger(__name__)

# Worker refusals that another worker may not share: try the next one.
_RETRYABLE = frozenset(
    {wire.ErrorCode.BUSY, wire.ErrorCode.UNAVAILABLE, wire.ErrorCode.INTERNAL, wire.ErrorCode.TIMEOUT}
)


class Proxy:
    def __init__(self, config: ProxyConfig, *, chain: Chain | None = None) -> None:
        """``chain``: an open chain to share (in-process networks); else ``config.chain`` opens its own."""
        self.config = config
        self._chain = chain
        self.chain_sync: ChainSync | None = None  # set when config.chain is given
        self.state = ServiceState.NEW
        self.trust: NodeTrust | None = None
        self.ledger: BillingLedger | None = None
        self.registry = WorkerRegistry()
        self.params = PriceParams(**config.pricing.model_dump())
        self.allowed_model_hashes: frozenset[bytes] | None = None
        self.audit = UsageAudit()
        self._worker_links: dict[str, net.NodeConnection] = {}
        self._client_links: dict[int, net.NodeConnection] = {}
        self._worker_owner: dict[str, str] = {}  # worker id → payee (owner address)
        self._conn_worker: dict[int, str] = {}  # connection id → worker id
        self._unreleased: set[str] = set()  # reservations the store refused to release (retried)
        self._servers: list[Any] = []
        self._stats_server: Any = None
        self.counters = {
            "requests": 0,
            "succeeded": 0,
            "failed": 0,
            "retried": 0,
            "rejected": 0,
            "cancelled": 0,
        }
        self.worker_port = config.worker_port
        self.client_port = config.client_port
        self.stats_port = config.stats_port

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        check_can_start("proxy", self.state)
        self.state = ServiceState.STARTING
        try:
            self.config.home.mkdir(parents=True, exist_ok=True)
            self.ledger = BillingLedger(self.config.home / "proxy-ledger.sqlite")
            # Requests still reserved belong to a previous process that died before settling them:
            # their answers were never released in full, so they are failed without charge.
            now = time.time()
            stale = self.ledger.release_stale(now=now, older_than=now)
            if stale:
                log.warning("released %d requests left reserved by a previous run", len(stale))
            self.trust = NodeTrust(self.config.tee, home=self.config.home, role="proxy")
            if self.config.chain is not None:
                from cocoon.proxy.chain_sync import ChainSync

                # Prices, allowed hashes and the rollback check come from the chain before serving.
                self.chain_sync = ChainSync(self, self.config.chain, chain=self._chain)
                await self.chain_sync.open()
            info = self.announce()
            workers = await net.serve(
                self.config.host,
                self.config.worker_port,
                ssl_context=self.trust.server_context(),
                verifier=self.trust.verify_peer,
                role=wire.Role.PROXY,
                info=info,
                handler=_WorkerSide(self),
            )
            self._servers.append(workers)
            self.worker_port = workers.port
            client_policy = make_policy(
                self.config.client_peer_policy,
                self.config.tee,
                sim_home=self.config.tee.sim_home or self.config.home,
                home=self.config.home,
                allowed=None,
            )
            clients = await net.serve(
                self.config.host,
                self.config.client_port,
                ssl_context=self.trust.server_context(),
                verifier=self.trust.verifier(client_policy),
                role=wire.Role.PROXY,
                info=info,
                handler=_ClientSide(self),
            )
            self._servers.append(clients)
            self.client_port = clients.port
            from cocoon.proxy.stats_http import start_stats_server

            self._stats_server = await start_stats_server(
                self, self.config.stats_host, self.config.stats_port
            )
            self.stats_port = self._stats_server.port
            if self.chain_sync is not None:
                self.chain_sync.start_loop()
            self.state = ServiceState.RUNNING
        except BaseException:
            await self._release()
            raise

    async def stop(self) -> None:
        if self.state in (ServiceState.STOPPED, ServiceState.STOPPING):
            return
        self.state = ServiceState.STOPPING
        await self._release()

    async def _release(self) -> None:
        if self.chain_sync is not None:
            with contextlib.suppress(Exception):
                await self.chain_sync.aclose()
        if self._stats_server is not None:
            with contextlib.suppress(Exception):
                await self._stats_server.aclose()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.aclose()
        self._servers.clear()
        if self.ledger is not None:
            self.ledger.close()
        self.state = ServiceState.STOPPED

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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

    def admit_worker(self, conn: net.NodeConnection) -> WorkerRecord:
        info = conn.peer.info
        try:
            model = str(info["model"])
            coefficient = int(info["coefficient"])
            max_active = int(info["max_active_requests"])
            proxy_count = max(1, int(info.get("proxy_count", 1)))
            model_hash = bytes.fromhex(str(info.get("model_hash", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise net.HandshakeRefused(f"bad worker announce: {exc}") from exc
        if not model or not 0 <= coefficient < 1_000_000_000 or max_active < 1:
            raise net.HandshakeRefused("worker announce out of range")
        attested_model = getattr(conn.peer.attestation, "model_hash", None)
        if attested_model is not None and attested_model != model_hash:
            raise net.HandshakeRefused("announced model hash differs from the attested one")
        if self.allowed_model_hashes is not None and model_hash not in self.allowed_model_hashes:
            raise net.HandshakeRefused("model hash not allowed by the root contract")
        owner = str(info.get("owner_address", ""))
        if self.chain_sync is not None:
            self._register_worker_payee(owner)
        # A stable id (not the connection's): a failing worker that reconnects keeps its reputation.
        worker_id = f"{owner or 'anonymous'}/{model}/{info.get('instance', 0)}"
        if not owner:
            worker_id += f"/{conn.id}"
        if worker_id in self._worker_links:
            raise net.HandshakeRefused(f"worker {worker_id} is already connected")
        record = WorkerRecord(
            worker_id=worker_id,
            model=model,
            coefficient=coefficient,
            # Capacity is shared between the proxies a worker serves, as in the reference.
            max_active=-(-max_active // proxy_count),
            gpu_class=str(info.get("gpu_class", "unknown")),
            region=str(info.get("region", "unknown")),
            image_hash=(getattr(conn.peer.attestation, "image_hash", None) or b"").hex(),
            model_hash=model_hash.hex(),
            attested_at=time.time(),
            connected_at=time.time(),
        )
        self.registry.add(record)
        self._worker_links[worker_id] = conn
        self._worker_owner[worker_id] = owner or worker_id
        self._conn_worker[conn.id] = worker_id
        return record

    def _register_worker_payee(self, owner: str) -> None:
        """On a chain a worker is paid through its worker contract: its owner must be a TON address."""
        from cocoon.proxy.chain_sync import parse_address

        assert self.chain_sync is not None and self.ledger is not None
        address = parse_address(owner)
        if address is None:
            raise net.HandshakeRefused("owner_address must be the worker's TON wallet address")
        contract = self.chain_sync.worker_contract(address).to_str()  # type: ignore[no-untyped-call]
        self.ledger.upsert_worker(owner, contract=contract, now=time.time())

    async def notify_worker_payment(self, owner: str) -> None:
        """Tell the worker(s) paid to ``owner`` what they earned and what was paid out (cumulative)."""
        assert self.ledger is not None
        try:
            totals = self.ledger.worker_totals(owner)
        except perr.UnknownAccount:
            return
        params = {
            "earned_nano": totals.earnings_nano,
            "paid_nano": totals.paid_tokens * self.params.worker_fee_per_token,
            "adjusted_tokens": totals.tokens,
            "committed_tokens": totals.committed_tokens,
            "paid_tokens": totals.paid_tokens,
            "worker_contract": totals.contract,
        }
        for worker_id, payee in list(self._worker_owner.items()):
            link = self._worker_links.get(worker_id)
            if payee == owner and link is not None and not link.closed:
                with contextlib.suppress(net.NetError):
                    await link.notify("payment", params)

    def drop_worker(self, conn: net.NodeConnection) -> None:
        worker_id = self._conn_worker.pop(conn.id, None)
        if worker_id is None:
            return
        self._worker_links.pop(worker_id, None)
        self.registry.remove(worker_id)

    # -- clients ---------------------------------------------------------------------------------

    def client_id(self, conn: net.NodeConnection) -> str:
        owner = str(conn.peer.info.get("owner_address", ""))
        if owner:
            return owner
        key = getattr(conn.peer.attestation, "public_key", b"") or b""
        return "key:" + key.hex()

    def admit_client(self, conn: net.NodeConnection) -> None:
        assert self.ledger is not None
        client = self.client_id(conn)
        if self.chain_sync is not None:
            # Funds come from the client contract only: no test credit on a chain.
            tls_key = getattr(conn.peer.attestation, "public_key", b"") or b""
            if not self.chain_sync.register_client(client, conn.peer.info.get("owner_proof"), tls_key):
                raise net.HandshakeRefused(
                    "owner_address must be the client's TON wallet address, with a valid owner_proof"
                )
        else:
            self.ledger.ensure_client(client, credit=self.config.test_credit_nano, now=time.time())
        self._client_links[conn.id] = conn

    def models(self) -> list[dict[str, Any]]:
        by_model: dict[str, list[WorkerRecord]] = {}
        for record in self.registry.records():
            by_model.setdefault(record.model, []).append(record)
        out = []
        for model, records in sorted(by_model.items()):
            coefficients = sorted(r.coefficient for r in records)
            one_m = 1_000_000
            out.append(
                {
                    "id": model,
                    "workers": len(records),
                    "coefficients": coefficients,
                    # nanoTON per 1M tokens at the cheapest worker, per class.
                    "price_per_1m": {
                        "prompt": price(
                            TokenCounts(prompt=one_m), coefficients[0], self.params
                        ).client_cost_nano,
                        "completion": price(
                            TokenCounts(completion=one_m), coefficients[0], self.params
                        ).client_cost_nano,
                    },
                }
            )
        return out

    # -- one request -----------------------------------------------------------------------------

    async def handle_request(self, client_conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        assert self.ledger is not None
        request = stream.request
        self.counters["requests"] += 1
        client = self.client_id(client_conn)
        request_key = request.request_id.hex()
        now = time.time()
        self._retry_releases(now)
        try:
            reserve = reservation(request.max_tokens, len(request.body), request.max_coefficient, self.params)
            self.ledger.reserve(request_key, client, reserve, now, model=request.model)
        except perr.ProxyError as exc:
            self.counters["rejected"] += 1
            await stream.send_error(_wire_code(exc), str(exc))
            return
        settled = False
        try:
            async with asyncio.timeout(request.timeout):
                settled = await self._route(stream, client, request_key)
        except TimeoutError:
            self.counters["failed"] += 1
            with contextlib.suppress(Exception):
                await stream.send_error(wire.ErrorCode.TIMEOUT, "request timed out in the proxy")
        except asyncio.CancelledError:
            # The client cancelled or its link died, before or after the first byte.
            self.counters["cancelled"] += 1
            raise
        finally:
            if not settled:
                # Nothing was delivered: release the reservation, charge nothing.
                # No-op when the request already settled or was billed as partial delivery.
                self._release_reservation(request_key)

    def _release_reservation(self, request_key: str) -> None:
        """Free a request's reserved funds; if the store refuses now, retry before later requests."""
        assert self.ledger is not None
        try:
            self.ledger.release(request_key, now=time.time())
        except perr.LedgerError as exc:
            log.error("billing store refused to release %s (%s); will retry", request_key, exc)
            self._unreleased.add(request_key)

    def _retry_releases(self, now: float) -> None:
        assert self.ledger is not None
        for request_key in sorted(self._unreleased):
            try:
                self.ledger.release(request_key, now=now)
            except perr.LedgerError:
                return  # the store is still failing: keep the rest for next time
            self._unreleased.discard(request_key)

    async def _route(self, stream: net.IncomingStream, client: str, request_key: str) -> bool:
        request = stream.request
        meta = request.meta or {}
        tried: set[str] = set()
        last_error = "no workers"
        for attempt in range(self.config.max_attempts):
            try:
                record = self.registry.choose(
                    request.model,
                    max_coefficient=request.max_coefficient,
                    now=time.time(),
                    region=meta.get("region"),
                    gpu_class=meta.get("gpu_class"),
                    exclude=frozenset(tried),
                )
            except perr.ProxyError as exc:
                if attempt and isinstance(exc, perr.NoWorkers):
                    break
                self.counters["rejected"] += 1
                await stream.send_error(_wire_code(exc), str(exc))
                return False
            tried.add(record.worker_id)
            if attempt:
                self.counters["retried"] += 1
            link = self._worker_links.get(record.worker_id)
            if link is None:
                continue
            outcome = await self._try_worker(stream, link, record, client, request_key)
            if outcome is not None:
                return outcome
            last_error = f"worker {record.worker_id} failed before answering"
        self.counters["failed"] += 1
        await stream.send_error(
            wire.ErrorCode.UNAVAILABLE, f"no worker could serve the request ({last_error})"
        )
        return False

    async def _try_worker(
        self,
        stream: net.IncomingStream,
        link: net.NodeConnection,
        record: WorkerRecord,
        client: str,
        request_key: str,
    ) -> bool | None:
        """Run the request on one worker. None = failed before the first byte (retry elsewhere).

        Whatever ends the attempt — an answer, an error, the app leaving, the proxy's deadline — the
        registry hears exactly once that the worker's slot is free again, and an answer the proxy
        stops reading is cancelled at the worker (so its engine stops too).
        """
        started = time.monotonic()
        self.registry.started(record.worker_id, time.time())
        attempt = _Attempt()
        try:
            return await self._attempt(stream, link, record, request_key, attempt, started)
        finally:
            if attempt.out is not None and not attempt.out_done:
                with contextlib.suppress(Exception):
                    await asyncio.shield(attempt.out.cancel("the proxy stopped waiting"))
            if not attempt.reported:
                self.registry.finished(
                    record.worker_id, ok=False, tokens=0, duration=time.monotonic() - started, now=time.time()
                )

    async def _attempt(
        self,
        stream: net.IncomingStream,
        link: net.NodeConnection,
        record: WorkerRecord,
        request_key: str,
        attempt: _Attempt,
        started: float,
    ) -> bool | None:
        assert self.ledger is not None
        request = stream.request
        try:
            out = attempt.out = await link.open_stream(
                endpoint=request.endpoint,
                model=request.model,
                body=request.body,
                max_coefficient=request.max_coefficient,
                max_tokens=request.max_tokens,
                timeout=request.timeout * 0.95,
                request_id=secrets.token_bytes(32),
                meta={},
            )
            async with asyncio.timeout(self.config.first_byte_timeout_s):
                first = await anext(aiter(out))
        except (net.NetError, StopAsyncIteration, TimeoutError) as exc:
            attempt.out_done = True
            attempt.reported = True
            self.registry.finished(
                record.worker_id, ok=False, tokens=0, duration=time.monotonic() - started, now=time.time()
            )
            log.info("worker %s failed before first byte: %r", record.worker_id, exc)
            return None
        if isinstance(first, wire.StreamError):
            attempt.out_done = True
            ok = first.code not in _RETRYABLE
            attempt.reported = True
            self.registry.finished(
                record.worker_id, ok=ok, tokens=0, duration=time.monotonic() - started, now=time.time()
            )
            if not ok:
                return None
            await stream.send_error(first.code, first.message)
            self.counters["failed"] += 1
            return False
        assert isinstance(first, wire.ResponseHead)
        self.registry.first_byte(record.worker_id, time.monotonic() - started)
        await stream.send_head(first.status, first.headers)
        tally = RelayTally()
        final: wire.Message | None = None
        try:
            async for event in out:
                if isinstance(event, wire.ResponseChunk):
                    tally.feed(event.data)
                    await stream.send_chunk(event.data)
                else:
                    final = event
                    break
        except asyncio.CancelledError:
            # The client went away: stop the worker's engine, bill what was delivered.
            attempt.out_done = True
            with contextlib.suppress(Exception):
                await asyncio.shield(out.cancel("client cancelled"))
            with contextlib.suppress(perr.LedgerError):
                await asyncio.shield(self._settle(request_key, record, tally, None))
            raise
        except net.NetError as exc:
            final = None
            log.info("worker %s lost mid-stream: %r", record.worker_id, exc)
        attempt.out_done = final is not None or attempt.out_done
        duration = time.monotonic() - started
        if isinstance(final, wire.ResponseEnd):
            try:
                charge, over_reported = await self._settle(
                    request_key, record, tally, final.usage, request_bytes=len(request.body)
                )
            except perr.LedgerError as exc:
                # Our own store failed, not the worker: it did its job. The answer is withheld
                # (never delivered unbilled); the reservation is released once the store recovers.
                attempt.reported = True
                self.registry.finished(
                    record.worker_id, ok=True, tokens=0, duration=duration, now=time.time()
                )
                self.counters["failed"] += 1
                log.error("billing store failed to settle %s: %s", request_key, exc)
                with contextlib.suppress(Exception):
                    await stream.send_error(
                        wire.ErrorCode.INTERNAL, "billing store unavailable; answer withheld"
                    )
                return False
            attempt.reported = True
            self.registry.finished(
                record.worker_id,
                ok=True,
                tokens=final.usage.completion_tokens,
                duration=duration,
                now=time.time(),
            )
            if over_reported:
                self.registry.usage_mismatch(record.worker_id)
            self.counters["succeeded"] += 1
            meta: dict[str, Any] = {
                **dict(final.meta),
                "cost_nano": charge.client_cost_nano,
                "adjusted_tokens": charge.total_adjusted,
                "worker_coefficient": record.coefficient,
                "worker_id": record.worker_id,
            }
            # Countersigned only if the worker's key (the one attested on its link) signed it.
            receipt = None
            if self.trust is not None:
                receipt = countersign(
                    self.trust.identity.private_key,
                    meta.get("receipt"),
                    worker_attestation=link.peer.attestation,
                    request_id=stream.request.request_id,
                    coefficient=record.coefficient,
                    adjusted_tokens=charge.total_adjusted,
                    cost_nano=charge.client_cost_nano,
                )
            meta.pop("receipt", None)
            if receipt is not None:
                meta["receipt"] = receipt
                meta["worker_key"] = receipt["proxy"]["body"]["worker_key"]
            await stream.send_end(final.usage, meta)
            return True
        # Broken after the first byte: the client pays only what it received.
        try:
            await self._settle(request_key, record, tally, None)
        except perr.LedgerError as exc:
            log.error("billing store failed to bill a partial answer %s: %s", request_key, exc)
        attempt.reported = True
        self.registry.finished(record.worker_id, ok=False, tokens=0, duration=duration, now=time.time())
        self.counters["failed"] += 1
        message = (
            final.message if isinstance(final, wire.StreamError) else "worker connection lost mid-answer"
        )
        with contextlib.suppress(Exception):
            await stream.send_error(wire.ErrorCode.UNAVAILABLE, message, usage=_delivered_usage(tally))
        return True

    async def _settle(
        self,
        request_key: str,
        record: WorkerRecord,
        tally: RelayTally,
        reported: wire.Usage | None,
        *,
        request_bytes: int | None = None,
    ) -> tuple[Charge, bool]:
        """Price and durably record one request before the answer is released.

        A finished answer is billed at the worker's reported usage, capped by what was actually relayed
        (an over-reporting worker is caught and loses reputation). A cut-off answer (worker lost, app
        gone) is billed only for what was delivered: one completion token per relayed delta, no prompt.
        """
        assert self.ledger is not None
        tally.finish()
        owner = self._worker_owner.get(record.worker_id, record.worker_id)
        now = time.time()
        if reported is None:
            usage = _counts(_delivered_usage(tally))
            charge = price(usage, record.coefficient, self.params)
            # The disk sync (synchronous=FULL) runs off the event loop so other streams keep flowing.
            await asyncio.to_thread(self.ledger.fail, request_key, charge, worker=owner, now=now, usage=usage)
            await self.notify_worker_payment(owner)
            return charge, False
        audit = self.audit.check(_counts(reported), tally, request_bytes=request_bytes)
        charge = price(audit.billable, record.coefficient, self.params)
        await asyncio.to_thread(self.ledger.settle, request_key, owner, charge, now, usage=audit.billable)
        await self.notify_worker_payment(owner)
        return charge, audit.over_reported

    def statistics(self) -> dict[str, Any]:
        assert self.ledger is not None
        out = stats_json(
            self.ledger.statistics(),
            self.registry.statistics(time.time()),
            clients=self.ledger.clients(),
            worker_totals=self.ledger.workers(),
        )
        out.update(
            {
                "state": self.state.value,
                "image_hash": (self.trust.image_hash or b"").hex() if self.trust else "",
                "clients_connected": len(self._client_links),
                "requests": dict(self.counters),
                "models": self.models(),
            }
        )
        if self.chain_sync is not None:
            out["chain"] = self.chain_sync.statistics()
        return out


@dataclasses.dataclass
class _Attempt:
    """Book-keeping of one try on one worker (see Proxy._try_worker)."""

    out: net.OutgoingStream | None = None
    out_done: bool = False  # the worker's stream ended (or was cancelled): nothing to cancel
    reported: bool = False  # registry.finished() was called for this try


def _counts(usage: wire.Usage) -> TokenCounts:
    return TokenCounts(
        prompt=usage.prompt_tokens,
        cached=usage.cached_tokens,
        completion=usage.completion_tokens,
        reasoning=usage.reasoning_tokens,
    )


def _delivered_usage(tally: RelayTally) -> wire.Usage:
    """What a cut-off answer delivered: one completion token per non-empty delta relayed."""
    return wire.Usage(prompt_tokens=0, cached_tokens=0, completion_tokens=tally.deltas, reasoning_tokens=0)


def _wire_code(exc: perr.ProxyError) -> wire.ErrorCode:
    status = getattr(exc, "http_status", 500)
    try:
        return wire.ErrorCode(status)
    except ValueError:
        return wire.ErrorCode.INTERNAL


class _WorkerSide(net.NullHandler):
    """The proxy's worker port: workers announce themselves and answer; they send no requests."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if conn.peer.role is not wire.Role.WORKER:
            raise net.HandshakeRefused("this port is for workers")
        record = self.proxy.admit_worker(conn)
        log.info("worker %s joined: %s ×%s", record.worker_id, record.model, record.coefficient / 1000)

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.proxy.drop_worker(conn)


class _ClientSide(net.NullHandler):
    """The proxy's client port: requests, and the control queries of the client API."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if conn.peer.role is not wire.Role.CLIENT:
            raise net.HandshakeRefused("this port is for clients")
        self.proxy.admit_client(conn)
        if self.proxy.chain_sync is not None:
            await self.proxy.chain_sync.refresh_client(self.proxy.client_id(conn))

    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        await self.proxy.handle_request(conn, stream)

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        proxy = self.proxy
        if method == "time":
            return {"time": time.time()}
        if method == "models":
            return {"models": proxy.models()}
        if method == "balance":
            assert proxy.ledger is not None
            if proxy.chain_sync is not None:  # the app may just have topped up: read its contract now
                await proxy.chain_sync.refresh_client(proxy.client_id(conn))
            return dataclasses.asdict(proxy.ledger.client_totals(proxy.client_id(conn)))
        if method == "attestation":
            return {
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
                    }
                    for r in proxy.registry.records()
                ],
                "nonce": params.get("nonce"),
                "time": int(time.time()),
            }
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, f"unknown query {method}")

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.proxy._client_links.pop(conn.id, None)


def _attestation_json(conn: net.NodeConnection | None) -> dict[str, Any]:
    if conn is None:
        return {}
    attestation = conn.peer.attestation
    to_json = getattr(attestation, "to_json", None)
    return dict(to_json()) if callable(to_json) else {}
