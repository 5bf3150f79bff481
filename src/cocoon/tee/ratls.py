"""RA-TLS certificates: self-signed Ed25519, quote in critical extension .1, claims in critical .2.

:func:`make_attested_certificate` builds one from a backend; :func:`parse_certificate` checks the
profile (self-signed by its own Ed25519 key, no CA, only known critical extensions) and returns the
pieces. Deciding whether the quote is genuine and allowed is the policy's job (:mod:`.policy`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtensionOID

from cocoon.tee.backends import TeeBackend
from cocoon.tee.claims import MAX_CLAIMS_SIZE, Claims
from cocoon.tee.errors import BackendError, CertificateInvalid
from cocoon.tee.quote import MAX_QUOTE_SIZE
from cocoon.tee.tls import make_plain_certificate

__all__ = [
    "CLAIMS_OID",
    "CLOCK_SKEW_S",
    "MAX_LIFETIME_S",
    "QUOTE_OID",
    "RaTlsCertificate",
    "make_attested_certificate",
    "parse_certificate",
]

QUOTE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.12345.1")
CLAIMS_OID = x509.ObjectIdentifier("1.3.6.1.4.1.12345.2")
MAX_LIFETIME_S = 86400
# The one tolerance between two nodes' clocks. The TLS handshake leaves certificate times to the
# policy (cocoon.tee.tls), which judges them with this, so a certificate is not backdated either.
CLOCK_SKEW_S = 300
MAX_CERT_SIZE = 64 * 1024
_KNOWN_CRITICAL = frozenset(
    {
        QUOTE_OID,
        CLAIMS_OID,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RaTlsCertificate:
    der: bytes
    public_key: bytes
    not_before: int
    not_after: int
    quote: bytes | None
    claims_raw: bytes
    claims: Claims

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key.hex(),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "quote_size": len(self.quote) if self.quote is not None else 0,
            "claims": self.claims.to_json(),
        }


def make_attested_certificate(
    private_key: ed25519.Ed25519PrivateKey,
    backend: TeeBackend,
    *,
    now: int,
    lifetime_s: int = MAX_LIFETIME_S,
    model_hash: bytes | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> tuple[x509.Certificate, Claims]:
    """Claims bind the key; the backend quotes SHA-512(claims); both go into critical extensions."""
    if not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise CertificateInvalid(f"certificate lifetime must be 1..{MAX_LIFETIME_S} s")
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    claims = Claims(
        public_key=public,
        backend=backend.name,
        timestamp=now,
        model_hash=model_hash,
        extra=extra_claims or {},
    )
    claims_raw = claims.encode()
    quote = backend.quote(claims.report_data())
    if quote is not None and len(quote) > MAX_QUOTE_SIZE:
        raise BackendError(f"quote of {len(quote)} bytes exceeds {MAX_QUOTE_SIZE}")
    extensions: tuple[tuple[x509.ObjectIdentifier, bytes], ...] = ((CLAIMS_OID, claims_raw),)
    if quote is not None:
        extensions = ((QUOTE_OID, quote), *extensions)
    cert = make_plain_certificate(
        private_key,
        not_before=dt.datetime.fromtimestamp(now, dt.UTC),
        lifetime=dt.timedelta(seconds=lifetime_s),
        extensions=extensions,
    )
    return cert, claims


def parse_certificate(der: bytes) -> RaTlsCertificate:
    """Parse and check the RA-TLS profile; raises :class:`CertificateInvalid` for anything else."""
    if not isinstance(der, bytes | bytearray) or not der:
        raise CertificateInvalid("certificate must be non-empty bytes")
    if len(der) > MAX_CERT_SIZE:
        raise CertificateInvalid("certificate too large")
    return _parse_certificate(bytes(der))


# A peer presents the same certificate on every link it opens (until it renews): parse and check
# those bytes once. The result is immutable and depends on the bytes alone; failures are not kept.
@functools.lru_cache(maxsize=64)
def _parse_certificate(der: bytes) -> RaTlsCertificate:
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        public_key = cert.public_key()
        extensions = list(cert.extensions)
        not_before = int(cert.not_valid_before_utc.timestamp())
        not_after = int(cert.not_valid_after_utc.timestamp())
        issuer, subject = cert.issuer, cert.subject
    except Exception as exc:  # cryptography raises ValueError, and a few other types on odd ASN.1
        raise CertificateInvalid(f"malformed certificate: {exc}") from exc
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise CertificateInvalid("certificate key is not Ed25519")
    if issuer != subject:
        raise CertificateInvalid("certificate is not self-signed (issuer differs from subject)")
    try:
        public_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature as exc:
        raise CertificateInvalid("certificate is not signed by its own key") from exc
    values: dict[x509.ObjectIdentifier, bytes] = {}
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise CertificateInvalid(f"unknown critical extension {ext.oid.dotted_string}")
        if ext.oid == ExtensionOID.BASIC_CONSTRAINTS and ext.value.ca:  # type: ignore[attr-defined]
            raise CertificateInvalid("a CA certificate cannot be an RA-TLS leaf")
        if ext.oid in (QUOTE_OID, CLAIMS_OID):
            if not ext.critical:
                raise CertificateInvalid(f"extension {ext.oid.dotted_string} must be critical")
            values[ext.oid] = bytes(ext.value.value)  # type: ignore[attr-defined]
    if CLAIMS_OID not in values:
        raise CertificateInvalid("certificate has no claims extension")
    claims_raw = values[CLAIMS_OID]
    if len(claims_raw) > MAX_CLAIMS_SIZE:
        raise CertificateInvalid("claims too large")
    quote = values.get(QUOTE_OID)
    if quote is not None and len(quote) > MAX_QUOTE_SIZE:
        raise CertificateInvalid("quote extension too large")
    claims = Claims.decode(claims_raw)
    public = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return RaTlsCertificate(
        der=bytes(der),
        public_key=public,
        not_before=not_before,
        not_after=not_after,
        quote=quote,
        claims_raw=claims_raw,
        claims=claims,
    )
