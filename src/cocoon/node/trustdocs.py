"""Documents a proxy signs about its workers: published statistics and evidence of misbehaviour.

A document is ``{"kind": str, "body": {...}, "proxy_key": hex, "sig": base64}``; the signature is
Ed25519 by the proxy's attested (RA-TLS) key over ``DOMAIN || kind || "\\n" || canonical(body)``
(sorted keys, no spaces), so any language can check it. As with receipts, a signature alone proves
nothing: :func:`verify_document` takes the key the reader saw attested on its own link to the proxy
and refuses any other.

Anchoring: the proxy's on-chain state commit carries a 256-bit hash; when the proxy publishes
statistics it posts :func:`anchor_hash` of its session hash and of the statistics' digest
(:func:`document_digest`) instead of the bare session hash. A reader holding the anchored document
and the session hash checks it against the proxy contract's committed hash with
:func:`verify_anchored`: the proxy cannot show clients statistics other than those it anchored.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.errors import CocoonError
from cocoon.node.receipt import canonical

__all__ = [
    "ANCHOR_DOMAIN",
    "DOMAIN",
    "EVIDENCE",
    "WORKER_STATS",
    "DocumentError",
    "anchor_hash",
    "document_digest",
    "sign_document",
    "verify_anchored",
    "verify_document",
]

DOMAIN = b"cocoon-proxy-document-v1\n"
ANCHOR_DOMAIN = b"cocoon-reputation-anchor-v1\n"
WORKER_STATS = "worker-stats"
EVIDENCE = "evidence"
KINDS = frozenset({WORKER_STATS, EVIDENCE})
MAX_DOCUMENT_BYTES = 4 << 20


class DocumentError(CocoonError):
    """A proxy document is malformed, of another kind, not signed by the attested key, or not anchored."""


def _message(kind: str, body: Mapping[str, Any]) -> bytes:
    return DOMAIN + kind.encode() + b"\n" + canonical(body)


def sign_document(key: ed25519.Ed25519PrivateKey, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The signed document of ``kind`` over ``body`` (JSON-serialisable)."""
    if kind not in KINDS:
        raise DocumentError(f"unknown document kind {kind!r}")
    body = dict(body)
    signature = key.sign(_message(kind, body))
    return {
        "kind": kind,
        "body": body,
        "proxy_key": key.public_key().public_bytes_raw().hex(),
        "sig": base64.b64encode(signature).decode(),
    }


def verify_document(document: object, *, proxy_key: bytes, kind: str) -> dict[str, Any]:
    """The body of ``document`` if it is a ``kind`` document signed by ``proxy_key`` (the attested key)."""
    if not isinstance(document, Mapping):
        raise DocumentError("a proxy document is an object")
    body, signature = document.get("body"), document.get("sig")
    if document.get("kind") != kind:
        raise DocumentError(f"document is a {document.get('kind')!r}, not a {kind!r}")
    if not isinstance(body, Mapping) or not isinstance(signature, str):
        raise DocumentError("a proxy document needs a body and a signature")
    if document.get("proxy_key") != proxy_key.hex():
        raise DocumentError("document names another proxy key than the attested one")
    try:
        raw = base64.b64decode(signature, validate=True)
        ed25519.Ed25519PublicKey.from_public_bytes(proxy_key).verify(raw, _message(kind, body))
    except (ValueError, TypeError) as exc:
        raise DocumentError(f"malformed document: {exc}") from exc
    except InvalidSignature as exc:
        raise DocumentError("document signature does not verify with the attested proxy key") from exc
    return dict(body)


def document_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical signed document (what is anchored, and what evidence is named by)."""
    return hashlib.sha256(canonical(document)).digest()


def anchor_hash(session_hash: bytes, digest: bytes) -> bytes:
    """The 256-bit value a state commit carries: the session hash bound to the statistics' digest."""
    if len(session_hash) != 32 or len(digest) != 32:
        raise DocumentError("session hash and digest must be 32 bytes each")
    return hashlib.sha256(ANCHOR_DOMAIN + session_hash + digest).digest()


def verify_anchored(anchored: object, *, proxy_key: bytes, committed_hash: bytes) -> dict[str, Any]:
    """The statistics body of an anchored publication ``{"seqno", "session_hash", "document"}`` if its
    document is signed by ``proxy_key`` and, with its session hash, is what the chain committed."""
    if not isinstance(anchored, Mapping):
        raise DocumentError("an anchored publication is an object")
    document = anchored.get("document")
    body = verify_document(document, proxy_key=proxy_key, kind=WORKER_STATS)
    try:
        session = bytes.fromhex(str(anchored.get("session_hash", "")))
    except ValueError as exc:
        raise DocumentError("session_hash is not hex") from exc
    assert isinstance(document, Mapping)
    if anchor_hash(session, document_digest(document)) != committed_hash:
        raise DocumentError("these statistics are not the ones the proxy committed on chain")
    if body.get("seqno") != anchored.get("seqno"):
        raise DocumentError("the statistics name another commit seqno")
    return body
