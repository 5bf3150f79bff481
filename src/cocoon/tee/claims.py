"""The user claims of an RA-TLS certificate: what the quote's report_data commits to.

COCOON's claims are the raw 32-byte Ed25519 public key. Ours add an optional model hash, the
backend name, a timestamp and free-form extras, encoded as canonical JSON (sorted keys, no
spaces) so that SHA-512 over the bytes is reproducible. Raw 32-byte claims are still accepted
when decoding, so certificates from the reference implementation parse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cocoon.tee.errors import CertificateInvalid

__all__ = ["CLAIMS_VERSION", "MAX_CLAIMS_SIZE", "Claims"]

CLAIMS_VERSION = 1
# Room for an 8-GPU box: each GPU's attestation report with its certificate chain is about 7 KiB,
# the sealing keys (hybrid + classical) about 2.7 KiB.
MAX_CLAIMS_SIZE = 128 * 1024
_RESERVED = frozenset({"v", "public_key", "backend", "timestamp", "model_hash"})


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    public_key: bytes
    backend: str = "none"
    timestamp: int | None = None
    model_hash: bytes | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    legacy: bool = False  # decoded from COCOON's raw-public-key form

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise CertificateInvalid("claims public key must be 32 bytes (Ed25519)")
        if _RESERVED & set(self.extra):
            raise CertificateInvalid(
                f"extra claims may not use reserved names {sorted(_RESERVED & set(self.extra))}"
            )
        object.__setattr__(self, "extra", _frozen(self.extra))

    def encode(self) -> bytes:
        if self.legacy:
            return self.public_key
        doc: dict[str, Any] = dict(self.extra)
        doc.update(v=CLAIMS_VERSION, public_key=self.public_key.hex(), backend=self.backend)
        if self.timestamp is not None:
            doc["timestamp"] = self.timestamp
        if self.model_hash is not None:
            doc["model_hash"] = self.model_hash.hex()
        try:
            encoded = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        except (TypeError, ValueError) as exc:
            raise CertificateInvalid(f"extra claims are not JSON-serialisable: {exc}") from exc
        if len(encoded) > MAX_CLAIMS_SIZE:
            # Fail at the node's own start, not at every peer that would refuse the certificate.
            raise CertificateInvalid(
                f"claims are {len(encoded)} bytes, over the {MAX_CLAIMS_SIZE}-byte limit"
            )
        return encoded

    def report_data(self) -> bytes:
        """The 64 bytes a quote must carry: SHA-512 of the encoded claims."""
        return hashlib.sha512(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> Claims:
        if len(data) == 32:
            return cls(public_key=bytes(data), legacy=True)
        if len(data) > MAX_CLAIMS_SIZE:
            raise CertificateInvalid("claims too large")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise CertificateInvalid(f"claims are not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("v") != CLAIMS_VERSION:
            raise CertificateInvalid("claims have an unknown version")
        try:
            public_key = bytes.fromhex(doc.pop("public_key"))
            backend = doc.pop("backend")
            timestamp = doc.pop("timestamp", None)
            model_hex = doc.pop("model_hash", None)
            model_hash = bytes.fromhex(model_hex) if model_hex is not None else None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CertificateInvalid(f"malformed claims: {exc}") from exc
        doc.pop("v")
        if not isinstance(backend, str) or not (timestamp is None or type(timestamp) is int):
            raise CertificateInvalid("malformed claims: backend or timestamp has the wrong type")
        claims = cls(
            public_key=public_key, backend=backend, timestamp=timestamp, model_hash=model_hash, extra=doc
        )
        if claims.encode() != bytes(data):
            raise CertificateInvalid("claims are not in canonical form")
        return claims

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.encode()) if not self.legacy else {"public_key": self.public_key.hex()}
