"""Sealed requests at the worker: open the envelope with a key from its TEE, seal every answer frame.

A request with ``meta["e2ee"]`` (contract 3 of round three) carries a body only this worker's
sealing keys can open (:mod:`cocoon.e2ee`). The worker opens it with the first key it holds of those
the envelope names, under the routing ``aad`` rebuilt from what it received (endpoint, model,
max_tokens and the envelope id): a proxy that changed any of them gets a refusal, not an answer.
Every answer chunk (error bodies too) is then sealed in order, and the end marker carries a trailer
the client checks against the receipt: the usage, SHA-256 of the plaintext answer and its
completion id, which the proxy never sees.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cocoon import wire
from cocoon.e2ee import AnswerSealer, SealedRequest, SealError, SealKeyPair, open_request, routing_aad
from cocoon.node.receipt import ResponseDigest

__all__ = ["STALE_PHRASE", "SealedAnswer", "SealedRefusal", "is_sealed", "open_sealed"]

STALE_PHRASE = "e2ee keys"  # in refusals a fresh worker_keys answer may cure (contract 3)
MAX_ENVELOPE_ID = 64

FindKey = Callable[[bytes], SealKeyPair | None]


class SealedRefusal(Exception):
    """The sealed request cannot be served here: sent to the proxy as ``code`` and ``message``."""

    def __init__(self, code: wire.ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_sealed(request: wire.Request) -> bool:
    return "e2ee" in (request.meta or {})


def _envelope_id(meta: Mapping[str, Any] | None) -> str:
    raw = (meta or {}).get("e2ee")
    envelope = raw.get("id") if isinstance(raw, Mapping) and raw.get("v") == 1 else None
    if not isinstance(envelope, str) or not 0 < len(envelope) <= MAX_ENVELOPE_ID:
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, "meta.e2ee must carry v = 1 and the envelope id")
    return envelope


@dataclass(slots=True)
class SealedAnswer:
    """One sealed request opened: its body, and the sealer of its answer."""

    body: bytes
    sealer: AnswerSealer
    frames: int = 0
    sealed_bytes: int = 0
    plain: ResponseDigest = field(default_factory=ResponseDigest)  # of the plaintext: for the trailer

    def seal(self, chunk: bytes) -> bytes:
        self.plain.update(chunk)
        frame = self.sealer.seal(chunk)
        self.frames += 1
        self.sealed_bytes += len(frame)
        return frame

    def end_meta(self, usage: wire.Usage) -> dict[str, Any]:
        """``ResponseEnd.meta["e2ee"]``: the counts the proxy meters by, and the sealed end marker."""
        trailer = {
            "completion_id": self.plain.completion_id,
            "frames": self.frames,
            "plain_sha256": self.plain.digest().hex(),
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "cached_tokens": usage.cached_tokens,
                "completion_tokens": usage.completion_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            },
        }
        end = self.sealer.finish(json.dumps(trailer, sort_keys=True, separators=(",", ":")).encode())
        return {
            "v": 1,
            "frames": self.frames,
            "bytes": self.sealed_bytes,
            "end": base64.b64encode(end).decode(),
        }


def open_sealed(request: wire.Request, find: FindKey) -> SealedAnswer:
    """Open a sealed request with the first key ``find`` holds of those it names; raises
    :class:`SealedRefusal` (the proxy retries another worker on UNAVAILABLE)."""
    envelope_id = _envelope_id(request.meta)
    try:
        sealed = SealedRequest.from_bytes(request.body)
    except SealError as exc:
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, f"malformed sealed request: {exc}") from exc
    keypair = next((k for k in map(find, sealed.key_ids) if k is not None), None)
    if keypair is None:
        raise SealedRefusal(
            wire.ErrorCode.UNAVAILABLE, f"this worker holds none of the {STALE_PHRASE} the request names"
        )
    aad = routing_aad(request.endpoint, request.model, request.max_tokens, envelope_id)
    try:
        opened = open_request(request.body, keypair, aad=aad)
    except SealError as exc:
        # Tampered with, or a routing field changed on the way: never served.
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, f"the sealed request does not open: {exc}") from exc
    return SealedAnswer(body=opened.body, sealer=AnswerSealer(opened.content_key, aad=aad))
