"""Sealed requests from the client: prompts and answers the proxy relays but cannot read.

The client asks the proxy for the certificates of a model's candidate workers (the ``worker_keys``
query), verifies each one itself under its own TEE policy for workers (the same verifier that
judges proxies, with the root's worker image and model allowlists when a root is configured), and
reads the sealing keys from the verified claims (``extra["e2ee"]``): a key the proxy merely states
is never used. It then seals the body once for up to :data:`MAX_CANDIDATES` workers in the proxy's
order, so the proxy can still choose, retry and balance among them (contract 3 of round three).
The routing fields stay outside and are bound to the envelope (:func:`cocoon.e2ee.routing_aad`).

Each answer frame is opened in order (:class:`SealedCall`); a frame that does not open, comes out of
order, or an answer without its authenticated end marker is refused with a clear OpenAI error, and
nothing past the failure point reaches the app.

``e2ee`` (client config): ``"auto"`` seals whenever the proxy lists a verified worker with keys and
falls back to plain otherwise; ``"required"`` refuses instead of falling back; ``"off"`` never seals.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cocoon import net, tee, wire
from cocoon.e2ee import STALE_PHRASE, AnswerOpener, RecipientKey, SealError, Suite, routing_aad, seal_request
from cocoon.oai import ApiError, ErrorKind
from cocoon.oai.capabilities import required_by_body

__all__ = [
    "KEYS_TTL_S",
    "MAX_CANDIDATES",
    "E2eeMode",
    "SealedCall",
    "Sealing",
    "VerifiedWorker",
    "WorkerKeyCache",
    "is_stale_keys_refusal",
    "seal_for",
]

log = logging.getLogger(__name__)

E2eeMode = Literal["auto", "required", "off"]
MAX_CANDIDATES = 4  # workers one request is sealed for: the proxy may pick, retry and balance among them
KEYS_TTL_S = 60.0  # a model's verified keys are asked for again after this long
MAX_LISTED = 32
MAX_MODELS = 64  # models whose keys are kept at once

Query = Callable[[str, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
PolicyOf = Callable[[], tee.AttestationPolicy | None]


def is_stale_keys_refusal(message: wire.Message) -> bool:
    """A refusal before any answer that says the request's keys are not (or no longer) served."""
    return isinstance(message, wire.StreamError) and STALE_PHRASE in message.message


def _served_as(requested: str, served: object) -> bool:
    """A request for ``name`` is served by ``name@commit:verity`` (as the proxy matches models)."""
    if not isinstance(served, str):
        return False
    return requested == served if "@" in requested else requested == served.split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class VerifiedWorker:
    """A worker whose certificate this client verified, and the key it seals to for it."""

    worker_id: str
    key: RecipientKey
    expires_at: int
    image_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "key_id": self.key.key_id.hex(),
            "suite": self.key.suite.value,
            "expires_at": self.expires_at,
            "image_hash": self.image_hash,
            "verified_by_client": True,
        }


def _preferred(worker_id: str, claims: object) -> RecipientKey | None:
    """The worker's hybrid key if its claims carry one, else its classical key; None without keys."""
    entries = claims if isinstance(claims, list) else [claims]
    keys = []
    for entry in entries:
        if isinstance(entry, Mapping):
            with contextlib.suppress(SealError):
                keys.append(RecipientKey.from_claim(worker_id, entry))
    keys.sort(key=lambda k: k.suite is not Suite.HYBRID)
    return keys[0] if keys else None


@dataclass
class WorkerKeyCache:
    """Verified sealing keys per model, asked of the proxy and checked here; kept :data:`KEYS_TTL_S`,
    never past a certificate's expiry, and forgotten when a refusal says they are stale."""

    query: Query
    policy: PolicyOf
    ttl_s: float = KEYS_TTL_S
    _by_model: dict[str, tuple[float, list[VerifiedWorker]]] = field(default_factory=dict)
    _asking: dict[str, asyncio.Future[list[VerifiedWorker]]] = field(default_factory=dict)

    def cached(self) -> dict[str, list[VerifiedWorker]]:
        return {model: list(workers) for model, (_, workers) in self._by_model.items()}

    def forget(self, model: str) -> None:
        self._by_model.pop(model, None)

    async def workers(self, model: str) -> list[VerifiedWorker]:
        now = time.time()
        held = self._by_model.get(model)
        if held is not None and now < held[0] and all(now < w.expires_at for w in held[1]):
            return held[1]
        asking = self._asking.get(model)
        if asking is None:  # one question per model, however many requests wait for it
            asking = self._asking[model] = asyncio.ensure_future(self._refresh(model, now))
            asking.add_done_callback(lambda _: self._asking.pop(model, None))
        return await asyncio.shield(asking)

    async def _refresh(self, model: str, now: float) -> list[VerifiedWorker]:
        workers = await self._fetch(model, now)
        expiry = min([now + self.ttl_s, *(float(w.expires_at) for w in workers)])
        self._by_model[model] = (expiry, workers)
        while len(self._by_model) > MAX_MODELS:  # an app naming many models: the oldest go first
            del self._by_model[next(iter(self._by_model))]
        return workers

    async def _fetch(self, model: str, now: float) -> list[VerifiedWorker]:
        policy = self.policy()
        if policy is None:
            return []
        try:
            answer = await self.query("worker_keys", {"model": model})
        except net.QueryFailed as exc:  # a proxy from before sealing: no keys to seal to
            log.info("the proxy lists no worker keys: %s", exc)
            return []
        listed = answer.get("workers")
        out: list[VerifiedWorker] = []
        for entry in listed[:MAX_LISTED] if isinstance(listed, list) else []:
            worker = await self._verify(entry, model, policy, now)
            if worker is not None and all(w.key.key_id != worker.key.key_id for w in out):
                out.append(worker)
        return out

    async def _verify(
        self, entry: object, model: str, policy: tee.AttestationPolicy, now: float
    ) -> VerifiedWorker | None:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("worker_id"), str):
            return None
        worker_id = str(entry["worker_id"])
        try:
            der = base64.b64decode(str(entry.get("certificate", "")), validate=True)
            attestation = await policy.averify_certificate(der, now=int(now))
        except (binascii.Error, ValueError, tee.AttestationError) as exc:
            log.warning("refused the certificate the proxy gave for worker %s: %s", worker_id, exc)
            return None
        if not _served_as(model, attestation.claims.get("model")):
            log.warning("worker %s's certificate is for another model", worker_id)
            return None
        key = _preferred(worker_id, attestation.claims.get("e2ee"))
        if key is None:
            return None
        image = attestation.image_hash.hex() if attestation.image_hash else ""
        return VerifiedWorker(worker_id, key, attestation.not_after, image)


@dataclass(slots=True)
class SealedCall:
    """One sealed request: what goes to the proxy, and the opener of its answer."""

    body: bytes
    meta: dict[str, Any]
    workers: tuple[VerifiedWorker, ...]
    opener: AnswerOpener
    trailer: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.opener.complete

    def open(self, frame: bytes) -> bytes:
        """The next frame's plaintext; an :class:`ApiError` for anything that does not authenticate."""
        try:
            return self.opener.open(frame)
        except SealError as exc:
            raise _refused(exc) from exc

    def finish(self, end: wire.ResponseEnd) -> dict[str, Any]:
        """Check the end marker the worker sealed; returns what the client records of the answer."""
        raw = end.meta.get("e2ee")
        marker = raw.get("end") if isinstance(raw, Mapping) else None
        try:
            if not isinstance(marker, str):
                raise SealError("the answer ended without its sealed end marker (truncated?)")
            trailer = json.loads(self.opener.open_final(base64.b64decode(marker, validate=True)))
        except (SealError, ValueError) as exc:
            raise _refused(exc) from exc
        self.trailer = trailer if isinstance(trailer, dict) else {}
        return self.record(end.meta)

    def record(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The client's record of the sealing (in receipts and ``/cocoon/receipts``)."""
        receipt = meta.get("receipt")
        worker = receipt.get("worker") if isinstance(receipt, Mapping) else None
        body = worker.get("body") if isinstance(worker, Mapping) else None
        signed_usage = body.get("usage") if isinstance(body, Mapping) else None
        return {
            "sealed_for": [w.worker_id for w in self.workers],
            "suites": sorted({w.key.suite.value for w in self.workers}),
            "frames": self.opener.frames,
            "complete": self.opener.complete,
            "completion_id": self.trailer.get("completion_id", ""),
            "plain_sha256": self.trailer.get("plain_sha256", ""),
            # The usage sealed inside the answer is the usage the worker signed for the proxy.
            "usage_matches_receipt": signed_usage is not None and signed_usage == self.trailer.get("usage"),
        }


def _refused(exc: Exception) -> ApiError:
    return ApiError(
        ErrorKind.UPSTREAM_FAILED,
        f"the sealed answer failed authentication and was refused: {exc}",
    )


@dataclass
class Sealing:
    """Seals requests under ``mode`` (see the module docstring), counting sealed and plain answers."""

    mode: E2eeMode
    cache: WorkerKeyCache
    max_candidates: int = MAX_CANDIDATES
    counters: dict[str, int] = field(default_factory=lambda: {"sealed": 0, "plain": 0, "refused": 0})

    async def seal(
        self, *, endpoint: str, model: str, max_tokens: int, body: bytes, meta: Mapping[str, Any]
    ) -> SealedCall | None:
        """The sealed form of a request, or None to send it plain (``off``, or ``auto`` without keys)."""
        if self.mode == "off":
            return None
        try:
            workers = (await self.cache.workers(model))[: self.max_candidates]
        except net.NetError as exc:
            raise ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}") from exc
        if not workers:
            if self.mode == "required":
                raise ApiError(
                    ErrorKind.MODEL_UNAVAILABLE,
                    f"no worker of {model!r} offers sealed answers that this client could verify "
                    '(client e2ee = "required")',
                    param="model",
                )
            return None
        try:
            return seal_for(endpoint, model, max_tokens, body, meta, workers)
        except SealError as exc:  # a body over the envelope's limit: never sent plain instead
            raise ApiError(ErrorKind.REQUEST_TOO_LARGE, f"the request cannot be sealed: {exc}") from exc

    def forget(self, model: str) -> None:
        self.cache.forget(model)

    def counted(self, call: SealedCall | None, *, ok: bool) -> None:
        key = "plain" if call is None else ("sealed" if ok and call.complete else "refused")
        self.counters[key] += 1

    def report(self) -> dict[str, Any]:
        """What ``/v1/attestation`` shows of sealing: the mode, the keys verified, answers by kind."""
        return {
            "mode": self.mode,
            "answers": dict(self.counters),
            "workers": {m: [w.to_json() for w in ws] for m, ws in self.cache.cached().items()},
        }


def seal_for(
    endpoint: str,
    model: str,
    max_tokens: int,
    body: bytes,
    meta: Mapping[str, Any],
    workers: Sequence[VerifiedWorker],
) -> SealedCall:
    """Seal ``body`` once for ``workers``; the routing fields bind it (contract 3 of round three)."""
    envelope_id = secrets.token_hex(16)
    aad = routing_aad(endpoint, model, max_tokens, envelope_id)
    sealed = seal_request(body, [w.key for w in workers], aad=aad)
    # What the body needs, with the parameter that needs it (the proxy's refusal names it, as for a plain body).
    needs = {c.value: param for c, param in required_by_body(endpoint, body).items()}
    e2ee = {
        "v": 1,
        "id": envelope_id,
        "key_ids": [k.hex() for k in sealed.key_ids],
        "needs": needs,
        "prompt_bytes": len(body),
    }
    opener = AnswerOpener(sealed.content_key, aad=aad)
    return SealedCall(sealed.to_bytes(), {**meta, "e2ee": e2ee}, tuple(workers), opener)
