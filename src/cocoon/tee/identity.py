"""A node's RA-TLS identity: its key, its attested certificate, and the TLS contexts built from them."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.tee.backends import TeeBackend
from cocoon.tee.claims import Claims
from cocoon.tee.policy import AttestationPolicy, PeerAttestation
from cocoon.tee.ratls import MAX_LIFETIME_S, make_attested_certificate
from cocoon.tee.tls import create_ssl_context, pem_pair

__all__ = ["NodeIdentity"]


class NodeIdentity:
    """Immutable once made; :meth:`rotated` returns a fresh identity (new key, new quote)."""

    __slots__ = (
        "backend",
        "cert_der",
        "cert_pem",
        "claims",
        "extra_claims",
        "image_hash",
        "key_pem",
        "lifetime_s",
        "model_hash",
        "not_after",
        "not_before",
        "private_key",
        "public_key",
    )

    def __init__(
        self,
        *,
        backend: TeeBackend,
        private_key: ed25519.Ed25519PrivateKey,
        cert_der: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        claims: Claims,
        not_before: int,
        not_after: int,
        lifetime_s: int,
        model_hash: bytes | None,
        extra_claims: Mapping[str, Any] | None,
    ) -> None:
        self.backend = backend
        self.private_key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.cert_der = cert_der
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.claims = claims
        self.not_before = not_before
        self.not_after = not_after
        self.lifetime_s = lifetime_s
        self.model_hash = model_hash
        self.extra_claims = dict(extra_claims or {})
        self.image_hash = backend.image_hash()

    @classmethod
    def create(
        cls,
        backend: TeeBackend,
        *,
        now: int,
        model_hash: bytes | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        lifetime_s: int = MAX_LIFETIME_S,
        private_key: ed25519.Ed25519PrivateKey | None = None,
    ) -> NodeIdentity:
        key = private_key or ed25519.Ed25519PrivateKey.generate()
        cert, claims = make_attested_certificate(
            key, backend, now=now, lifetime_s=lifetime_s, model_hash=model_hash, extra_claims=extra_claims
        )
        cert_pem, key_pem = pem_pair(key, cert)
        return cls(
            backend=backend,
            private_key=key,
            cert_der=cert.public_bytes(serialization.Encoding.DER),
            cert_pem=cert_pem,
            key_pem=key_pem,
            claims=claims,
            not_before=int(cert.not_valid_before_utc.timestamp()),
            not_after=int(cert.not_valid_after_utc.timestamp()),
            lifetime_s=lifetime_s,
            model_hash=model_hash,
            extra_claims=extra_claims,
        )

    @property
    def cert_sha256(self) -> bytes:
        return hashlib.sha256(self.cert_der).digest()

    def server_context(self) -> ssl.SSLContext:
        return create_ssl_context(server=True, cert_pem=self.cert_pem, key_pem=self.key_pem)

    def client_context(self) -> ssl.SSLContext:
        return create_ssl_context(server=False, cert_pem=self.cert_pem, key_pem=self.key_pem)

    def needs_rotation(self, now: int) -> bool:
        """True once half the lifetime is gone: peers never see a certificate close to expiry."""
        return now >= self.not_before + self.lifetime_s // 2

    def rotated(self, now: int, *, keep_key: bool = False) -> NodeIdentity:
        """A new identity (fresh certificate and quote) with the same backend, model hash and extra
        claims; a new key unless ``keep_key`` (live links, receipts and evidence then stay bound)."""
        return NodeIdentity.create(
            self.backend,
            now=now,
            model_hash=self.model_hash,
            extra_claims=self.extra_claims,
            lifetime_s=self.lifetime_s,
            private_key=self.private_key if keep_key else None,
        )

    def attestation(self, *, now: int) -> PeerAttestation:
        """What a peer with the ``any`` policy sees of this identity (for status pages)."""
        return AttestationPolicy.any().verify_certificate(self.cert_der, now=now)

    def __repr__(self) -> str:
        return f"NodeIdentity(backend={self.backend.name}, key={self.public_key.hex()[:16]}…, not_after={self.not_after})"
