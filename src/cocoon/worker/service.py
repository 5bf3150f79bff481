"""The worker: serves one model to the proxies it dials, inside a TEE, and gets paid per token.

Workers sit behind NAT, so they dial proxies (never the other way). Each proxy link is kept alive
by a :class:`~cocoon.net.Dialer`. A request arrives as a wire stream; the worker checks capacity
and the model, runs it on the engine and relays the engine's exact bytes back, then the usage the
engine reported. Stopping drains: running requests finish, new ones are refused as busy.

A request that needs a capability the engine lacks (tools, a JSON schema, logprobs, images, …) gets
a 400 naming the parameter before the engine sees it; the worker announces its engine's
capabilities so proxies route such requests only to workers that have them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cocoon import net, wire
from cocoon.core.httpserve import HttpServer, start_http_server
from cocoon.e2ee import SealKeyPair
from cocoon.errors import ServiceError
from cocoon.inference import (
    EmbeddedEngine,
    Endpoint,
    Engine,
    EngineError,
    EngineResponse,
    HttpEngine,
    check_capabilities,
)
from cocoon.node.earnings import record_payment, with_estimates
from cocoon.node.evidence import answer_challenge
from cocoon.node.lifecycle import ServiceState
from cocoon.node.receipt import ResponseDigest, sign_worker_part
from cocoon.node.refusal import RefusalWatch
from cocoon.node.renewal import RENEWED, RenewalPusher, check_peer_renewal
from cocoon.node.rootwatch import apply_root_once, watch_root
from cocoon.node.sealkeys import SealKeys
from cocoon.node.secrets import open_node_secrets
from cocoon.node.service import Service
from cocoon.node.slashreceipts import SLASH_RECEIPT, HeldReceipts
from cocoon.node.statements import STATEMENT, HeldStatements
from cocoon.node.trust import ROLE_MEASUREMENTS, NodeTrust, registered_proxy_addresses
from cocoon.worker.config import WorkerConfig
from cocoon.worker.controls import live_update, tell_proxies, update_notice
from cocoon.worker.gpu import GpuEvidence, evidence_for_key
from cocoon.worker.health_http import build_health_app
from cocoon.worker.instance import instance_id
from cocoon.worker.limits import bound_generation
from cocoon.worker.logs import LogRing, worker_logger
from cocoon.worker.sealing import WITHHELD, SealedAnswer, SealedRefusal, is_sealed, open_sealed
from cocoon.worker.weights import hash_weights, verify_engine_weights, watch_engine_weights

if TYPE_CHECKING:  # the chain is loaded only when a root contract is configured
    from cocoon.chain import RootConfig

__all__ = ["Worker", "build_engine"]

_ENDPOINTS = {e.value: e for e in Endpoint}


def build_engine(config: WorkerConfig) -> Engine:
    settings = config.engine
    if settings.kind == "http":
        if settings.url is None:
            raise ValueError("engine.url is required for the http engine")
        return HttpEngine(
            settings.url,
            model_name=settings.model_name,
            model_path=settings.model_path,
            capabilities=settings.capabilities,
        )
    return EmbeddedEngine(
        model_path=settings.model_path,
        model_name=settings.model_name,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        embeddings=settings.embeddings,
    )


async def _quietly(close: Callable[[], Awaitable[object]]) -> None:
    """A clean-up that must not stop the ones after it."""
    with contextlib.suppress(Exception):
        await close()


WORKER_IMAGE = ROLE_MEASUREMENTS["worker"]


class Worker(Service):
    """One worker node. ``async with Worker(config) as w:`` or ``start()``/``stop()``."""

    role = "worker"

    def __init__(
        self, config: WorkerConfig, *, engine: Engine | None = None, links: net.Links | None = None
    ) -> None:
        """``links``: how proxy links are made (TCP unless given; a ``net.MemoryHub`` in tests)."""
        super().__init__(logger=worker_logger())
        self.config = config  # replaced by apply_live (its live fields change while running)
        self._started_config = config  # what the announce of every link says
        self._links = links
        self.engine = engine if engine is not None else build_engine(config)
        self.trust: NodeTrust | None = None
        self.seal_keys: SealKeys | None = None  # e2ee keys in the claims, rotated with the certificate
        self.model_hash: bytes | None = None
        self._dialers: list[net.Dialer] = []
        self._active = 0
        self._idle = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._idle.set()
        self._started_at = 0.0
        self.counters = {"served": 0, "failed": 0, "refused_busy": 0, "cancelled": 0, "completion_tokens": 0}
        self._generation_s = 0.0
        self.recent_errors: deque[str] = deque(maxlen=20)
        self.payments: dict[str, Mapping[str, Any]] = {}  # proxy address → latest signed payment status
        # The proxies' signed payouts, held so the owner can claim them (cocoon worker claim).
        self.statements = HeldStatements(config.home, logger=self.log)
        self.slash_receipts = HeldReceipts(config.home)  # the proxy's word against its own slash claims
        self.refusals = RefusalWatch(self.log)  # proxies that refused this worker for good
        self.gpu: GpuEvidence = GpuEvidence(kind="none")
        self._health: HttpServer | None = None
        self._logs = LogRing()
        self._drain_on_stop = True
        self.draining = False  # the owner's drain (dashboard): refuse new requests, finish running ones
        self.weights_changed: str | None = None  # why serving stopped for good (no resume from the dashboard)

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        stack.push_async_callback(_quietly, self.engine.aclose)  # registered first: closed last
        await self.engine.start()
        self.log.addHandler(self._logs)
        stack.callback(self.log.removeHandler, self._logs)
        if isinstance(self.engine, HttpEngine) and self.engine.model_path is not None:
            # The hash is of these weights only if the engine says it serves them (and keeps saying so).
            engine = (self.engine.base_url, self.engine.model_name, self.engine.model_path)
            await verify_engine_weights(*engine)
            self.spawn(watch_engine_weights(*engine, on_mismatch=self._weights_changed), name="weights-watch")
        self.model_hash = await asyncio.to_thread(self._compute_model_hash)
        allowed, proxies = await self._root_lists()
        if allowed and self.model_hash.hex() not in allowed:
            raise ServiceError(
                f"model hash {self.model_hash.hex()} of {self.engine.model_name} is not allowed "
                "(not in allowed_model_hashes / the root contract)"
            )
        # The GPUs' reports answer a nonce bound to the identity key, so the key comes first.
        secrets = await asyncio.to_thread(
            open_node_secrets,
            self.config.tee,
            home=self.config.home,
            role="worker",
            measurements=WORKER_IMAGE,
        )
        key = secrets.identity_key  # sealed (derived from the seal service's root) or fresh
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        sim_home = self.config.tee.sim_home or self.config.home
        self.gpu = await asyncio.to_thread(evidence_for_key, self.config.gpu, public, sim_home=sim_home)
        lifetime = self.config.tee.cert_lifetime_s
        seal_keys = self.seal_keys = SealKeys(lifetime_s=lifetime, seed=secrets.seal_seed)
        claims = {"model": self.engine.model_name, "gpu": self.gpu.to_claims()}
        self.trust = NodeTrust(
            self.config.tee,
            home=self.config.home,
            role="worker",
            model_hash=self.model_hash,
            extra_claims=lambda: {**claims, "e2ee": seal_keys.rotate()},  # each certificate: new keys
            links=self._links,
            private_key=key,
        )
        self.spawn(self.trust.keep_fresh(), name="cert-renewal")
        # Live proxy links get each renewed certificate: the proxy keeps choosing a worker linked > a day.
        links = lambda: [d.connection for d in self._dialers if d.connection is not None]  # noqa: E731
        self.spawn(RenewalPusher(self.trust, links, logger=self.log).run(), name="renewal-push")
        self._health = await start_http_server(
            build_health_app(self, self._logs), self.config.health_host, self.config.health_port
        )
        stack.push_async_callback(_quietly, self._health.aclose)
        if self.config.root is not None:
            # Proxies are judged by the root's image allowlist from the first dial, and again (live
            # links included) at every re-read.
            await apply_root_once(self.trust, self._read_root)
            self.spawn(watch_root(self.trust, self._read_root), name="root-watch")
        for address in proxies:
            dialer = self.trust.dialer(
                address, role=wire.Role.WORKER, info=self.announce(), handler=_ProxyLinkHandler(self)
            )
            stack.push_async_callback(_quietly, dialer.aclose)
            self.refusals.watch(dialer)  # a refusal for good stops that dialer instead of retrying
            await dialer.start()
            self._dialers.append(dialer)
        self._started_at = time.monotonic()
        self.log.info("serving %s to %d proxies", self.engine.model_name, len(proxies))

    async def _root_lists(self) -> tuple[set[str], list[str]]:
        """(allowed model hashes in hex, proxy addresses): from the root contract when configured."""
        root_settings = self.config.root
        if root_settings is None:
            return {h.lower() for h in self.config.allowed_model_hashes}, list(self.config.proxies)
        root = await self._read_root()
        bound = root.models.get(self.model_hash or b"")
        if bound is not None and bound != self.engine.model_name:
            # Allowed weights announced under another name would be refused by every proxy.
            raise ServiceError(
                f"the root contract allows this model only as {bound!r}, not {self.engine.model_name!r}"
            )
        # An empty list on the root means "any model" there too.
        allowed = {h.hex() for h in root.model_hashes}
        proxies = list(self.config.proxies)
        if root_settings.proxies_from_root:
            # Each entry names the address workers dial (its second half, if any, is for clients).
            proxies = registered_proxy_addresses(
                (e.worker_address for e in root.proxy_entries), for_workers=True
            )
            if not proxies:
                raise ServiceError("the root contract registers no proxy")
        return allowed, proxies

    async def _read_root(self) -> RootConfig:
        from cocoon.chain import fetch_root_config, open_chain, parse_address

        root_settings = self.config.root
        assert root_settings is not None
        chain = open_chain(root_settings)
        try:
            return await fetch_root_config(chain, parse_address(root_settings.root_address))
        finally:
            await chain.aclose()

    async def wait_connected(self) -> None:
        """Wait until every proxy link is up (tests and ``cocoon up`` use this)."""
        await asyncio.gather(*(d.wait_connected() for d in self._dialers))

    async def stop(self, *, drain: bool = True) -> None:
        """Stop serving; with ``drain`` running requests get ``drain_timeout_s`` to finish."""
        self._drain_on_stop = drain
        await super().stop()

    async def _drain(self) -> None:
        if self._drain_on_stop and self._active:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.drain_timeout_s):
                    await self._idle.wait()
        # Whatever still runs is aborted: its proxy sees the stream end and bills what it relayed.
        for task in list(self._running):
            task.cancel()

    @property
    def health_url(self) -> str:
        assert self._health is not None, "worker not started"
        return self._health.url

    async def engine_healthy(self) -> bool:
        return await self.engine.healthy()

    # -- what the worker tells proxies -----------------------------------------------------------

    def _weights_changed(self, why: str) -> None:
        self.draining = True  # new requests are refused as busy; running ones finish
        self.weights_changed = why
        self.recent_errors.append(why)
        self.log.error("%s: no longer taking requests", why)
        self.spawn(self._tell_proxies(), name="pause-notice")

    # -- controls at run time (worker.controls) ----------------------------------------------------

    async def apply_live(self, changes: Mapping[str, Any]) -> None:
        """Change live settings (coefficient, max_active_requests, drain_timeout_s) now; ValueError
        (nothing changed) for another field or a bad value. Every proxy is told on its link."""
        self.config = live_update(self.config, changes)
        self.log.info("settings changed while running: %s", dict(changes))
        await self._tell_proxies()

    async def set_accepting(self, accepting: bool) -> None:
        """Pause / drain (False: new requests refused, running ones finish) or resume (True)."""
        if accepting and self.weights_changed:
            raise ValueError(f"cannot resume: {self.weights_changed}; restart with the announced weights")
        self.draining = not accepting
        self.log.info("taking new requests" if accepting else "paused: running requests finish, no new ones")
        await self._tell_proxies()

    async def _tell_proxies(self, links: list[net.NodeConnection] | None = None) -> None:
        notice = update_notice(self.config, accepting=not self.draining)
        if links is not None and notice == update_notice(self._started_config, accepting=True):
            return  # a new link's announce says it all already
        await tell_proxies(links if links is not None else [d.connection for d in self._dialers], notice)

    def _compute_model_hash(self) -> bytes:
        path = getattr(self.engine, "model_path", None)
        if path is not None:
            return hash_weights(path, log=self.log)
        # An HTTP upstream without engine.model_path: its weights are not visible from here; like
        # the reference, identify the model by the SHA-256 of its full served name.
        return hashlib.sha256(self.engine.model_name.encode()).digest()

    def announce(self) -> dict[str, Any]:
        return {
            "model": self.engine.model_name,
            "model_hash": (self.model_hash or b"").hex(),
            "capabilities": sorted(self.engine.capabilities),
            "coefficient": self.config.coefficient,
            "max_active_requests": self.config.max_active_requests,
            "proxy_count": len(self.config.proxies),
            "gpu_class": self.config.gpu_class,
            "region": self.config.region,
            "owner_address": self.config.owner_address,
            "instance": instance_id(self.config.home),  # one per home: GPUs of one owner stay apart
        }

    def statistics(self) -> dict[str, Any]:
        uptime = time.monotonic() - self._started_at if self._started_at else 0.0
        tokens = self.counters["completion_tokens"]
        return {
            "state": self.state.value,
            "uptime_s": round(uptime, 1),
            "model": self.engine.model_name,
            "model_hash": (self.model_hash or b"").hex(),
            "capabilities": sorted(self.engine.capabilities),
            "image_hash": (self.trust.image_hash or b"").hex() if self.trust else "",
            "tee_backend": self.config.tee.backend,
            "attestation": {
                "backend": self.config.tee.backend,
                "cert_not_after": self.trust.identity.not_after if self.trust else None,
            },
            "gpu": self.gpu.summary(),
            "coefficient": self.config.coefficient,
            "active_requests": self._active,
            "max_active_requests": self.config.max_active_requests,
            "proxies": [
                {
                    "address": addr,
                    "connected": d.connection is not None,
                    "last_error": str(d.last_error) if d.last_error else None,  # why the link is down
                }
                for addr, d in zip(self.config.proxies, self._dialers, strict=False)
            ],
            "tokens_per_s": round(tokens / self._generation_s, 2) if self._generation_s else 0.0,
            **self.counters,
            "payments": with_estimates(self.payments),  # each with its next-payout estimate
            "recent_errors": list(self.recent_errors),
        }

    # -- serving one request ---------------------------------------------------------------------

    async def serve(self, stream: net.IncomingStream) -> None:
        request = stream.request
        if self.state is not ServiceState.RUNNING or self.draining:
            await stream.send_error(wire.ErrorCode.BUSY, "worker is draining")
            return
        if self._active >= self.config.max_active_requests:
            self.counters["refused_busy"] += 1
            await stream.send_error(wire.ErrorCode.BUSY, "worker at max_active_requests")
            return
        endpoint = _ENDPOINTS.get(request.endpoint)
        if endpoint is None:
            await stream.send_error(wire.ErrorCode.NOT_FOUND, f"unsupported endpoint {request.endpoint}")
            return
        sealed: SealedAnswer | None = None
        try:
            if is_sealed(request):  # opened with a key from this TEE; the answer is sealed back
                sealed = open_sealed(request, self._seal_key)
        except SealedRefusal as exc:
            await stream.send_error(exc.code, exc.message)
            return
        try:
            body = _load_body(request.body if sealed is None else sealed.body)
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            await stream.send_error(wire.ErrorCode.BAD_REQUEST, f"invalid request body: {exc}")
            return
        if body.get("model") != self.engine.model_name:
            await stream.send_error(wire.ErrorCode.NOT_FOUND, f"this worker serves {self.engine.model_name}")
            return
        body = bound_generation(endpoint, body, request.max_tokens)
        self._active += 1
        self._idle.clear()
        started = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._run(stream, endpoint, body, started, sealed)
        finally:
            if task is not None:
                self._running.discard(task)
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _open_engine(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        """The engine's answer, or the 400 for a parameter it cannot honour (never dropped)."""
        refusal = check_capabilities(self.engine.capabilities, endpoint, body)
        if refusal is not None:
            self.log.info("refused a request needing what the engine lacks: %s", endpoint.value)
            return refusal
        return await self.engine.open(endpoint, body)

    async def _run(
        self,
        stream: net.IncomingStream,
        endpoint: Endpoint,
        body: dict[str, Any],
        t0: float,
        sealed: SealedAnswer | None = None,
    ) -> None:
        try:
            response = await self._open_engine(endpoint, body)
        except EngineError as exc:
            self.counters["failed"] += 1
            self.recent_errors.append(f"engine: {exc}")
            code = wire.ErrorCode.BUSY if type(exc).__name__ == "EngineBusy" else wire.ErrorCode.UNAVAILABLE
            await stream.send_error(code, str(exc) if sealed is None else WITHHELD)
            return
        digest = ResponseDigest()
        if sealed is not None and response.ok:
            response.meter.observe(sealed.content.observer())  # one parse of each event for both
        async with response:
            await stream.send_head(response.status, response.headers)
            try:
                async for chunk in response:
                    data = chunk if sealed is None else sealed.seal(chunk)
                    digest.update(data)  # the bytes sent: the receipt covers what the client gets
                    await stream.send_chunk(data)
            except EngineError as exc:
                # Broken after the first byte: the proxy bills only what it relayed.
                self.counters["failed"] += 1
                self.recent_errors.append(f"engine mid-answer: {exc}")
                why = f"engine failed mid-answer: {exc if sealed is None else WITHHELD}"
                await stream.send_error(wire.ErrorCode.UNAVAILABLE, why)
                return
            usage = response.usage
        wire_usage = _to_wire_usage(usage)
        self.counters["served"] += 1
        self.counters["completion_tokens"] += wire_usage.completion_tokens
        self._generation_s += time.monotonic() - t0
        meta: dict[str, Any] = {
            "worker_time_s": round(time.monotonic() - t0, 4),
            "receipt": self._receipt(stream.request.body, digest, wire_usage, sealed=sealed),
        }
        if sealed is not None:
            meta["e2ee"] = sealed.end_meta(wire_usage)
        await stream.send_end(wire_usage, meta)

    def _seal_key(self, key_id: bytes) -> SealKeyPair | None:
        """The sealing key pair with this id, if this worker holds it (current or not yet expired)."""
        return None if self.seal_keys is None else self.seal_keys.find(key_id)

    def _receipt(
        self,
        request_body: bytes,
        digest: ResponseDigest,
        usage: wire.Usage,
        *,
        sealed: SealedAnswer | None = None,
    ) -> dict[str, Any]:
        """The worker's signed statement of this answer, with the key its quote binds."""
        assert self.trust is not None
        return sign_worker_part(
            self.trust.identity.private_key,
            request_body=request_body,
            response_sha256=digest.digest(),
            # A sealed answer's id is in its plaintext: the worker names it (an id, not content).
            completion_id=digest.completion_id if sealed is None else sealed.plain.completion_id,
            model=self.engine.model_name,
            usage={
                "prompt_tokens": usage.prompt_tokens,
                "cached_tokens": usage.cached_tokens,
                "completion_tokens": usage.completion_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            },
            issued_at=int(time.time()),
            sealed=sealed is not None,
        )


# orjson reads an integer past 64 bits (it may be from 19 digits on) as a float: a body with such
# a digit run (in a string too, which is rare) is read by json, which keeps it exact. Whatever
# orjson refuses, json reads or explains as before.
_LONG_DIGITS = re.compile(rb"\d{19}")


def _load_body(raw: bytes) -> Any:
    if _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def _to_wire_usage(usage: Any) -> wire.Usage:
    if usage is None:
        return wire.Usage(prompt_tokens=0, cached_tokens=0, completion_tokens=0, reasoning_tokens=0)
    return wire.Usage(
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


class _ProxyLinkHandler:
    """The worker's side of a proxy link."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_connect(self, conn: net.NodeConnection) -> None:
        self.worker.log.info("connected to proxy %s (image %s)", conn.peer.address, _image(conn))
        await self.worker.statements.on_connect(conn)  # refuses a proxy whose books rolled back
        await self.worker._tell_proxies([conn])  # the announce carries the start values: update them

    async def on_stream(self, conn: net.NodeConnection, stream: net.IncomingStream) -> None:
        try:
            await self.worker.serve(stream)
        except asyncio.CancelledError:
            self.worker.counters["cancelled"] += 1
            raise

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if method == "status":
            return self.worker.statistics()
        if method == "certificate" and self.worker.trust is not None:  # for clients' sealing keys
            return {"certificate": base64.b64encode(self.worker.trust.identity.cert_der).decode()}
        if method == "attestation" and self.worker.trust is not None:
            # Fresh evidence for the app's nonce, signed by the key this link attested.
            claims = {"role": "worker", "model": self.worker.engine.model_name}
            return await answer_challenge(
                self.worker.trust.identity, params, now=int(time.time()), claims=claims
            )
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, f"unknown query {method}")

    async def on_notify(self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        if method == "payment":
            previous = self.worker.payments.get(conn.peer.address)
            self.worker.payments[conn.peer.address] = record_payment(previous, params, time.time())
        elif method == STATEMENT:
            self.worker.statements.on_notice(conn, params)
        elif method == SLASH_RECEIPT:
            self.worker.slash_receipts.on_notice(conn, params)
        elif method == RENEWED:  # the proxy's renewed certificate, judged as at the handshake
            await check_peer_renewal(self.worker.trust, conn, params, logger=self.worker.log)

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        self.worker.log.info("proxy link %s closed: %s", conn.peer.address, exc)


def _image(conn: net.NodeConnection) -> str:
    image = getattr(conn.peer.attestation, "image_hash", None)
    return image.hex() if image else "none"
