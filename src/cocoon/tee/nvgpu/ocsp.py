"""Revocation of NVIDIA certificates by OCSP, with answers cached like quote collateral.

As NVIDIA's verifier does, every certificate of a GPU chain below the root except the attestation
key's own (the GPU makes that one at boot) and every RIM signer certificate below the root is
checked: an OCSP request (SHA-384 certificate id) to NVIDIA's service, an answer that must be
``SUCCESSFUL``, name that very certificate, be signed by a responder whose certificate chains into
the certificates above it, and be current (``this_update`` .. ``next_update``). ``GOOD`` passes;
``REVOKED`` and ``UNKNOWN`` refuse the evidence. Answers are kept (memory and an optional directory)
until their ``next_update``, so a verifier asks once per certificate per validity window and keeps
working through short outages; requests carry no nonce for that reason (NVIDIA's
``ocsp_nonce_disabled`` mode).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from cocoon.tee.errors import CollateralUnavailable, QuoteInvalid
from cocoon.tee.nvgpu.chain import issued_by, public_key_of

__all__ = ["NVIDIA_OCSP_SERVICE", "OcspCache", "RevocationSource", "check_chain_revocation"]

NVIDIA_OCSP_SERVICE = "https://ocsp.ndis.nvidia.com/"
MAX_ANSWER = 64 * 1024
Post = Callable[[str, bytes], bytes]  # (url, DER request) -> DER answer


class RevocationSource(Protocol):
    def check(
        self, cert: x509.Certificate, issuer: x509.Certificate, above: Sequence[x509.Certificate], *, now: int
    ) -> None:
        """Raise :class:`QuoteInvalid` when ``cert`` is revoked, :class:`CollateralUnavailable`
        when its status cannot be learned; ``above`` is the chain from ``issuer`` to the root."""


def _post(url: str, body: bytes) -> bytes:
    answer = httpx.post(url, content=body, headers={"Content-Type": "application/ocsp-request"}, timeout=10.0)
    answer.raise_for_status()
    return answer.content[:MAX_ANSWER]


def _verify_signed_by(answer: ocsp.OCSPResponse, responder: x509.Certificate) -> None:
    key = public_key_of(responder, "OCSP responder")
    algorithm = answer.signature_hash_algorithm
    if algorithm is None:
        raise QuoteInvalid("OCSP answer has no signature hash algorithm")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        else:
            raise QuoteInvalid("OCSP responder key is neither EC nor RSA")
    except InvalidSignature as exc:
        raise QuoteInvalid("OCSP answer's signature does not verify") from exc


def _judge(
    raw: bytes, cert: x509.Certificate, above: Sequence[x509.Certificate], now: int
) -> datetime.datetime:
    """Check one answer; returns until when it may be reused."""
    try:
        answer = ocsp.load_der_ocsp_response(raw)
    except ValueError as exc:
        raise CollateralUnavailable(f"OCSP answer is not DER OCSP: {exc}") from exc
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CollateralUnavailable(f"OCSP service answered {answer.response_status.name}")
    if answer.serial_number != cert.serial_number:
        raise QuoteInvalid("OCSP answer is about another certificate")
    responder = answer.certificates[0] if answer.certificates else above[0]
    if not any(issued_by(responder, ca) for ca in above) and responder not in above:
        raise QuoteInvalid("OCSP responder certificate does not chain into the certificate's issuers")
    _verify_signed_by(answer, responder)
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    until = answer.next_update_utc
    if answer.this_update_utc > moment + datetime.timedelta(minutes=5) or (
        until is not None and until < moment
    ):
        raise CollateralUnavailable("OCSP answer is not current")
    if answer.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        reason = answer.revocation_reason.name if answer.revocation_reason else "unspecified"
        raise QuoteInvalid(f"certificate {cert.subject.rfc4514_string()} is revoked ({reason})")
    if answer.certificate_status != ocsp.OCSPCertStatus.GOOD:
        raise QuoteInvalid(f"certificate {cert.subject.rfc4514_string()} has unknown OCSP status")
    return until if until is not None else moment


class OcspCache:
    """OCSP answers from ``url`` (NVIDIA's service), kept until their ``next_update``."""

    def __init__(
        self, path: Path | None = None, *, url: str = NVIDIA_OCSP_SERVICE, post: Post | None = None
    ) -> None:
        self.path = path
        self.url = url
        self._post = post or _post
        self._memory: dict[str, tuple[bytes, datetime.datetime]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def check(
        self, cert: x509.Certificate, issuer: x509.Certificate, above: Sequence[x509.Certificate], *, now: int
    ) -> None:
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384()).build()
        key = hashlib.sha256(
            request.issuer_key_hash + cert.serial_number.to_bytes(32, "big", signed=True)
        ).hexdigest()
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        with self._lock:
            cached = self._memory.get(key)
        if cached is None and self.path is not None and (self.path / f"{key}.der").exists():
            raw = (self.path / f"{key}.der").read_bytes()
            try:
                cached = (raw, _judge(raw, cert, above, now))
            except CollateralUnavailable:
                cached = None  # stale: ask again
        if cached is not None and moment <= cached[1]:
            _judge(cached[0], cert, above, now)  # a revocation in a cached answer still refuses
            return
        try:
            raw = self._post(self.url, request.public_bytes(Encoding.DER))
        except Exception as exc:  # network or HTTP status: not available now
            raise CollateralUnavailable(f"OCSP service {self.url} unreachable: {exc}") from exc
        self.fetches += 1
        until = _judge(raw, cert, above, now)
        with self._lock:
            self._memory[key] = (raw, until)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = self.path / f".{key}.{secrets.token_hex(4)}.tmp"
            tmp.write_bytes(raw)
            os.replace(tmp, self.path / f"{key}.der")


def check_chain_revocation(
    chain: Sequence[x509.Certificate], source: RevocationSource, *, now: int, skip_leaf: bool
) -> None:
    """Check every certificate of a completed chain (leaf first, pinned root last) below the root."""
    for index in range(1 if skip_leaf else 0, len(chain) - 1):
        source.check(chain[index], chain[index + 1], chain[index + 1 :], now=now)
