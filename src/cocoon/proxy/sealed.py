"""Sealed requests at the proxy: routed, retried, metered and billed without their plaintext.

A sealed request (contract 3 of round three) is a normal request whose body is an
``cocoon.e2ee`` envelope that only the workers named in ``meta["e2ee"]["key_ids"]`` can open, and
whose answer comes back as sealed frames. The proxy therefore:

* routes it only to workers whose attested certificate carries one of those key ids
  (:class:`WorkerKeyBook`), with the capabilities the client declared (``needs``) instead of
  reading them from the body;
* hands clients the candidates' certificates (the ``worker_keys`` query), which each client
  verifies itself: the proxy never vouches for a key, it only passes certificates on;
* meters the answer from the worker-signed usage bounded by the sealed sizes
  (:class:`SealedTally`): every generated token decodes to at least one byte of the answer's
  plaintext, and a frame's plaintext is its size less :data:`FRAME_OVERHEAD`, so
  ``completion ≤ Σ (frame bytes − FRAME_OVERHEAD) × (1 + completion_slack_ratio) + completion_slack``
  (the answer's JSON or SSE framing only loosens it for an honest worker). The attested worker image
  also counts what the plaintext carries (text bytes, deltas, tool calls, the frame of the last
  content: ``worker/sealing.py``) and the proxy takes that count wherever it is lower
  (:meth:`SealedTally.attest`): a lying engine's usage is then bounded by the text it really sent,
  as for a plain answer; a lying count can only lower the bill. The prompt is bounded by the
  body's plaintext size (the envelope's ciphertext less its tag) plus the prompt slack, as a plain
  body's size bounds it; ``max_tokens`` and the reservation cap the bill as always (:mod:`.bill`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cocoon import net, wire
from cocoon.e2ee import KEY_ID_SIZE, MAX_ENVELOPE_ID, STALE_PHRASE, SealedRequest, SealError
from cocoon.e2ee.suites import TAG_SIZE
from cocoon.oai.capabilities import Capability, required_capabilities
from cocoon.proxy import errors as perr
from cocoon.proxy.metering import DEFAULT_AUDIT_POLICY, RelayTally
from cocoon.proxy.selection import WorkerRecord, model_matches

__all__ = [
    "FRAME_OVERHEAD",
    "KEY_ID_BYTES",
    "MAX_CANDIDATES",
    "BadSealedRequest",
    "SealedKeysGone",
    "SealedMeta",
    "SealedTally",
    "WorkerKeyBook",
    "claimed_key_ids",
    "parse_sealed_meta",
]

log = logging.getLogger(__name__)

KEY_ID_BYTES = KEY_ID_SIZE
MAX_CANDIDATES = 16  # key ids one request may name (a client seals for a few)
MAX_PARAM = 128  # a parameter's name in a refusal (e.g. messages[0].content[1].image_url)
MAX_LISTED = 32  # certificates one worker_keys answer carries at most
# A sealed frame is its plaintext plus a 6-byte header (version, kind, sequence) and the 16-byte AEAD
# tag (frame 0 also carries a 16-byte salt, and every plaintext is padded to 64-byte blocks: both are
# left in, so the bound is looser, never tighter).
TAG_BYTES = TAG_SIZE
FRAME_OVERHEAD = 6 + TAG_BYTES
CERTIFICATE_QUERY = "certificate"  # what a worker answers with its current RA-TLS certificate


class BadSealedRequest(perr.ProxyError):
    """``meta["e2ee"]`` is malformed: refused before any worker or reservation."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class SealedKeysGone(perr.ModelUnavailable):
    """No connected worker holds a key the request was sealed for: fetch ``worker_keys`` again."""

    def __init__(self, model: str) -> None:
        perr.ProxyError.__init__(
            self,
            f"no connected worker of {model!r} holds the {STALE_PHRASE} this request was sealed for "
            "(fetch worker_keys again)",
        )
        self.model = model


@dataclass(frozen=True, slots=True)
class SealedMeta:
    """What the proxy may read of a sealed request: whom it is for and what it needs."""

    key_ids: frozenset[bytes]
    needs: dict[Capability, str]
    plain_bytes: int  # the sealed body's plaintext size, read from the envelope (bounds the prompt)
    forward: dict[str, Any]  # what travels on to the worker (``meta["e2ee"]`` as validated)


_KNOWN_CAPABILITIES = frozenset(c.value for c in Capability)


def _int(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def parse_sealed_meta(endpoint: str, meta: Mapping[str, Any] | None, body: bytes) -> SealedMeta | None:
    """The request's ``meta["e2ee"]``, validated against its envelope; None for an unsealed request."""
    raw = (meta or {}).get("e2ee")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or raw.get("v") != 1:
        raise BadSealedRequest("meta.e2ee must be an object with v = 1")
    ids = raw.get("key_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_CANDIDATES:
        raise BadSealedRequest(f"meta.e2ee.key_ids must list 1 to {MAX_CANDIDATES} key ids")
    try:
        key_ids = frozenset(bytes.fromhex(i) for i in ids if isinstance(i, str))
    except ValueError as exc:
        raise BadSealedRequest("meta.e2ee.key_ids must be hex") from exc
    if len(key_ids) != len(ids) or any(len(k) != KEY_ID_BYTES for k in key_ids):
        raise BadSealedRequest(f"meta.e2ee.key_ids must be distinct {KEY_ID_BYTES}-byte hex ids")
    needs_raw = raw.get("needs", {})
    if isinstance(needs_raw, list):  # capability names alone: each is its own parameter
        needs_raw = {n: n for n in needs_raw if isinstance(n, str)} if len(needs_raw) <= 16 else None
    known = _KNOWN_CAPABILITIES
    if not isinstance(needs_raw, Mapping) or not all(
        n in known and isinstance(param, str) and 0 < len(param) <= MAX_PARAM
        for n, param in needs_raw.items()
    ):
        raise BadSealedRequest(f"meta.e2ee.needs must map capabilities of {sorted(known)} to parameters")
    envelope_id = raw.get("id")
    if not isinstance(envelope_id, str) or not 0 < len(envelope_id) <= MAX_ENVELOPE_ID:
        raise BadSealedRequest(f"meta.e2ee.id must be the envelope id (1 to {MAX_ENVELOPE_ID} characters)")
    if _int(raw.get("prompt_bytes", 0)) is None:
        raise BadSealedRequest("meta.e2ee.prompt_bytes must be a non-negative int")
    try:
        envelope = SealedRequest.from_bytes(body)
    except SealError as exc:
        raise BadSealedRequest(f"the sealed body is malformed: {exc}") from exc
    if frozenset(envelope.key_ids) != key_ids:
        raise BadSealedRequest("meta.e2ee.key_ids are not the keys the envelope is sealed for")
    # The prompt is bounded by the body's plaintext size: the ciphertext less its tag.
    plain_bytes = max(len(envelope.ciphertext) - TAG_BYTES, 0)
    # The endpoint's own capability is needed whatever the client declared.
    needs = required_capabilities(endpoint, {}) | {Capability(n): str(p) for n, p in needs_raw.items()}
    forward = {"v": 1, "id": envelope_id}  # the worker rebuilds the envelope's aad with it
    return SealedMeta(key_ids, needs, plain_bytes, forward)


def claimed_key_ids(attestation: object) -> frozenset[bytes]:
    """The e2ee key ids a verified certificate's claims carry (``extra["e2ee"]``: one claim or a list)."""
    claims = getattr(attestation, "claims", None)
    raw = claims.get("e2ee") if isinstance(claims, Mapping) else None
    entries = raw if isinstance(raw, list) else [raw]
    out = set()
    for entry in entries:
        key_id = entry.get("key_id") if isinstance(entry, Mapping) else None
        if isinstance(key_id, str):
            with contextlib.suppress(ValueError):
                if len(raw_id := bytes.fromhex(key_id)) == KEY_ID_BYTES:
                    out.add(raw_id)
    return frozenset(out)


class SealedTally(RelayTally):
    """What was relayed of a sealed answer: frames and their plaintext sizes, never their text.

    It stands in for :class:`RelayTally` in the audit: ``text_bytes`` is the plaintext the frames can
    hold, all of it "untokenized" (the proxy has no text to tokenize), so the completion bound is the
    byte bound of the module docstring; each frame with plaintext counts as one delta (a cut-off
    sealed answer pays one completion token per frame delivered, as a plain one per delta).
    """

    __slots__ = ("frames",)

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def feed(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        self._digest.update(data)
        self.chunks += 1
        self.frames += 1
        plain = max(len(data) - FRAME_OVERHEAD, 0)
        self.text_bytes += plain
        self._texts.dropped += plain
        if plain:
            self.deltas += 1

    def finish(self) -> None:
        """Nothing is buffered: a frame is counted whole when it is relayed."""

    def attest(self, meta: Mapping[str, Any], *, missed: bool) -> bool:
        """Tighten the counts with what the worker's attested image counted of the plaintext
        (``meta["e2ee"]["content"]``): never above what the sealed sizes allow. Returns whether the
        app missed content (it hung up before the frame that completed the last content); without
        a well-formed count, ``missed`` as the sizes alone say it."""
        e2ee = meta.get("e2ee")
        raw = e2ee.get("content") if isinstance(e2ee, Mapping) else None
        fields = ("text_bytes", "deltas", "tool_calls", "content_frames")
        counts = [_int(raw.get(f)) for f in fields] if isinstance(raw, Mapping) else [None]
        if any(c is None for c in counts):
            return missed
        text_bytes, deltas, tool_calls, content_frames = (int(c or 0) for c in counts)
        slack = DEFAULT_AUDIT_POLICY.tool_call_slack_tokens * tool_calls  # folded into the byte bound
        self.text_bytes = self._texts.dropped = min(self.text_bytes, text_bytes + slack)
        self.deltas = min(self.deltas, deltas)
        return content_frames > self.frames


# (verified attestation) from a certificate, by the proxy's own policy for workers
Verify = Callable[[bytes], object]


@dataclass(slots=True)
class _Held:
    """One worker's latest certificate, as the worker handed it and the proxy verified it."""

    connection_id: int
    der: bytes
    key_ids: frozenset[bytes]
    not_before: int
    not_after: int

    def fresh(self, now: float) -> bool:
        # Re-asked once half its life is gone: the worker renews (and rotates its key) then.
        return now < self.not_before + (self.not_after - self.not_before) / 2


@dataclass
class WorkerKeyBook:
    """The e2ee keys of connected workers: from the certificate each link attested, and the latest
    certificate each worker handed over (asked with the ``certificate`` query, kept fresh)."""

    links: Callable[[str], net.NodeConnection | None]
    query_timeout_s: float = 5.0
    _held: dict[str, _Held] = field(default_factory=dict)
    _asking: dict[str, asyncio.Future[_Held | None]] = field(default_factory=dict)
    # worker id → (the link's attestation, its claimed key ids): a link's attestation never changes,
    # so its claims are read once per link, not once per request.
    _claimed: dict[str, tuple[object, frozenset[bytes]]] = field(default_factory=dict)

    def key_ids(self, worker_id: str) -> frozenset[bytes]:
        link = self.links(worker_id)
        if link is None or link.closed:
            self._claimed.pop(worker_id, None)
            return frozenset()
        attestation = link.peer.attestation
        cached = self._claimed.get(worker_id)
        if cached is None or cached[0] is not attestation:
            cached = self._claimed[worker_id] = (attestation, claimed_key_ids(attestation))
        held = self._held.get(worker_id)
        if held is not None and held.connection_id == link.id:
            return cached[1] | held.key_ids
        return cached[1]

    def holders(self, worker_ids: Iterable[str], key_ids: frozenset[bytes]) -> frozenset[str]:
        """Which of ``worker_ids`` can open a request sealed for ``key_ids``."""
        return frozenset(w for w in worker_ids if self.key_ids(w) & key_ids)

    async def answer(
        self, params: Mapping[str, Any], records: Iterable[WorkerRecord], verify: Verify, now: float
    ) -> dict[str, Any]:
        """The ``worker_keys`` query (``{"model": str}``); a malformed one is refused."""
        model = params.get("model")
        if not isinstance(model, str) or not 0 < len(model) <= 256:
            raise net.QueryFailed(wire.ErrorCode.BAD_REQUEST, "worker_keys needs a model name")
        return await self.listing(model, records, verify, now)

    async def listing(
        self, model: str, records: Iterable[WorkerRecord], verify: Verify, now: float
    ) -> dict[str, Any]:
        """The ``worker_keys`` answer for ``model``: each candidate's current certificate."""
        candidates = [r for r in records if model_matches(model, r.model)]
        candidates.sort(key=lambda r: (r.coefficient, r.worker_id))  # cheapest first: routed first
        found = await asyncio.gather(*(self._current(r.worker_id, verify, now) for r in candidates))
        workers = [
            {
                "worker_id": record.worker_id,
                "certificate": base64.b64encode(held.der).decode(),
                "expires_at": held.not_after,
            }
            for record, held in zip(candidates, found, strict=True)
            if held is not None and held.key_ids
        ]
        return {"workers": workers[:MAX_LISTED]}

    async def _current(self, worker_id: str, verify: Verify, now: float) -> _Held | None:
        link = self.links(worker_id)
        if link is None or link.closed:
            self._held.pop(worker_id, None)
            return None
        held = self._held.get(worker_id)
        if held is not None and held.connection_id == link.id and held.fresh(now):
            return held
        asking = self._asking.get(worker_id)
        if asking is None:  # one question per worker, however many clients ask at once
            asking = self._asking[worker_id] = asyncio.ensure_future(self._ask(worker_id, link, verify))
            asking.add_done_callback(lambda _: self._asking.pop(worker_id, None))
        return await asyncio.shield(asking)

    async def _ask(self, worker_id: str, link: net.NodeConnection, verify: Verify) -> _Held | None:
        try:
            async with asyncio.timeout(self.query_timeout_s):
                answer = await link.query(CERTIFICATE_QUERY, {})
            held = self.accept(worker_id, link, answer.get("certificate"), verify)
        except (net.NetError, TimeoutError, ValueError) as exc:
            log.info("worker %s gave no usable certificate: %s", worker_id, exc)
            return None
        return held

    def accept(
        self, worker_id: str, link: net.NodeConnection, certificate: object, verify: Verify
    ) -> _Held | None:
        """Keep a certificate a worker handed over (asked, or told on renewal) once it passes the
        proxy's own policy and names the key its link attested; raises ``ValueError`` otherwise."""
        if not isinstance(certificate, str | bytes):
            raise ValueError("the certificate must be base64 DER")
        der = base64.b64decode(certificate, validate=True) if isinstance(certificate, str) else certificate
        try:
            attestation = verify(der)
        except Exception as exc:
            raise ValueError(f"certificate refused: {exc}") from exc
        linked = getattr(link.peer.attestation, "public_key", None)
        if getattr(attestation, "public_key", None) != linked:
            raise ValueError("the certificate names another key than the worker's link")
        held = _Held(
            connection_id=link.id,
            der=der,
            key_ids=claimed_key_ids(attestation),
            not_before=int(getattr(attestation, "not_before", 0)),
            not_after=int(getattr(attestation, "not_after", 0)),
        )
        self._held[worker_id] = held
        return held
