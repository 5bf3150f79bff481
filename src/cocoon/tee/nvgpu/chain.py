"""Certificate chains of NVIDIA evidence, checked with ``cryptography`` alone.

A GPU sends its attestation chain leaf first (the attestation key's certificate, then the GSP
BROM, the provisioner and the GH100 identity CA) and the chain ends at NVIDIA's Device Identity CA;
like NVIDIA's verifier we drop whatever root the GPU sent and pin our own copy. RIMs carry their
signer's chain in the XML signature and end at NVIDIA's CoRIM signing root, pinned the same way.

Every link is checked: the issuer's name and signature (:meth:`Certificate.verify_directly_issued_by`),
the validity window at ``now``, and that each issuer is a CA. The leaf's TCG DICE TcbInfo extension
carries the FWID that must equal the one in the report's opaque data.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from cocoon.tee.errors import QuoteInvalid

__all__ = [
    "DICE_TCB_INFO_OIDS",
    "completed_chain",
    "issued_by",
    "leaf_fwid",
    "load_chain",
    "public_key_of",
    "verify_chain",
]

DICE_TCB_INFO_OIDS = ("2.23.133.5.4.1", "2.23.133.5.4.1.1")
MAX_CHAIN = 8


def load_chain(pem_or_der: bytes | Sequence[bytes]) -> list[x509.Certificate]:
    """Certificates from a PEM bundle or a list of DER blobs; raises :class:`QuoteInvalid`."""
    try:
        if isinstance(pem_or_der, bytes):
            certs = x509.load_pem_x509_certificates(pem_or_der)
        else:
            certs = [x509.load_der_x509_certificate(bytes(der)) for der in pem_or_der]
    except ValueError as exc:
        raise QuoteInvalid(f"GPU evidence has an unreadable certificate: {exc}") from exc
    if not 1 <= len(certs) <= MAX_CHAIN:
        raise QuoteInvalid(f"GPU evidence has {len(certs)} certificates (1..{MAX_CHAIN} expected)")
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_chain(certs: Sequence[x509.Certificate], root: x509.Certificate, *, now: int, what: str) -> None:
    """``certs`` is leaf first; the last one is replaced by the pinned ``root`` when it claims the
    root's name, or chained to it otherwise. Raises :class:`QuoteInvalid`."""
    try:
        _verify_chain(list(certs), root, now=now, what=what)
    except ValueError as exc:  # cryptography parses fields lazily: a malformed one shows up here
        raise QuoteInvalid(f"{what} certificate chain is malformed: {exc}") from exc


def completed_chain(certs: Sequence[x509.Certificate], root: x509.Certificate) -> list[x509.Certificate]:
    """``certs`` with the pinned ``root`` at the end (in place of the sender's copy of it)."""
    chain = list(certs)
    if chain and chain[-1].subject == root.subject:
        chain = chain[:-1]
    return [*chain, root]


def _verify_chain(chain: list[x509.Certificate], root: x509.Certificate, *, now: int, what: str) -> None:
    chain = completed_chain(chain, root)
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    for index, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise QuoteInvalid(
                f"{what} certificate {index} ({cert.subject.rfc4514_string()}) is outside its validity "
                f"window ({cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d})"
            )
        issuer = chain[min(index + 1, len(chain) - 1)]
        if index + 1 < len(chain) and not _is_ca(issuer):
            raise QuoteInvalid(f"{what} certificate {index + 1} signs others but is not a CA")
        if not issued_by(cert, issuer):
            raise QuoteInvalid(
                f"{what} certificate {index} ({cert.subject.rfc4514_string()}) is not signed by "
                f"{issuer.subject.rfc4514_string()}"
            )


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s name and signature are on ``cert`` (False for a key or algorithm cryptography
    cannot read: a hostile certificate's unknown curve or key type is a refusal, not a crash)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def public_key_of(cert: x509.Certificate, what: str) -> CertificatePublicKeyTypes:
    """``cert``'s public key, or :class:`QuoteInvalid` naming ``what`` when it cannot be read."""
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:  # a key of an unknown curve or type
        raise QuoteInvalid(f"{what} key is unreadable: {exc}") from exc


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 3 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        element = _tlv(data, start)
        out.append(element)
        start = element[2]
    if start != end:
        raise ValueError("DER element overruns its parent")
    return out


def _first_fwid_digest(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> bytes | None:
    """The digest of the first FWID ``SEQUENCE { hashAlg OID, digest OCTET STRING }`` found depth
    first: in a TcbInfo it sits in field [6] fwids; NVIDIA's Hopper leaf puts it after the key."""
    if depth > 6:
        return None
    for tag, body, stop in _children(data, start, len(data) if end is None else end):
        if not tag & 0x20:  # primitive: nothing inside
            continue
        inner = _children(data, body, stop)
        if tag == 0x30 and len(inner) == 2 and inner[0][0] == 0x06 and inner[1][0] == 0x04:
            return data[inner[1][1] : inner[1][2]]
        found = _first_fwid_digest(data, body, stop, depth + 1)
        if found is not None:
            return found
    return None


def leaf_fwid(cert: x509.Certificate) -> bytes | None:
    """The first FWID digest of the TCG DICE TcbInfo extension, or None when there is none."""
    try:
        extensions = list(cert.extensions)
    except ValueError as exc:
        raise QuoteInvalid(f"GPU attestation certificate has malformed extensions: {exc}") from exc
    for ext in extensions:
        if ext.oid.dotted_string in DICE_TCB_INFO_OIDS and isinstance(ext.value, x509.UnrecognizedExtension):
            try:
                return _first_fwid_digest(ext.value.value)
            except (ValueError, IndexError) as exc:
                raise QuoteInvalid(f"GPU attestation certificate has a malformed TcbInfo: {exc}") from exc
    if any(ext.oid == ExtensionOID.BASIC_CONSTRAINTS and ext.value.ca for ext in extensions):
        raise QuoteInvalid("the GPU attestation certificate is a CA certificate")
    return None
