"""Sealed requests: the body encrypted once under a fresh content key, that key wrapped per worker.

As in Apple's Private Cloud Compute, one envelope is sealed to several candidate workers so the
proxy can still pick, retry and balance among them, and none of it can read the body. Layout
(version 1, big-endian)::

    version u8 = 1 | count u8 (1..16)
    count x ( suite u8 | key_id 16 | wrap )     wrap = HPKE(enc || content key || tag), fixed size per suite
    commitment 32                              HKDF(content key, "commit"): every opener gets one key
    body length u32 | body ciphertext          ChaCha20-Poly1305 under HKDF(content key, "request-body")

Each wrap's HPKE ``info`` binds the suite, the key id and SHA-256 of the caller's ``aad``; the body's
AEAD binds the ``aad`` and the whole header, so no recipient can be added, dropped or swapped and no
routing field the ``aad`` covers can change without the worker refusing the request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from cocoon.e2ee.errors import SealError
from cocoon.e2ee.keys import KEY_ID_SIZE, RecipientKey, SealKeyPair
from cocoon.e2ee.reader import Reader
from cocoon.e2ee.suites import CONTENT_KEY_SIZE, NONCE_SIZE, TAG_SIZE, Suite, expand, params, suite_by_id

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_RECIPIENTS",
    "OpenedRequest",
    "Recipient",
    "SealedRequest",
    "open_request",
    "seal_request",
]

VERSION = 1
MAX_RECIPIENTS = 16
MAX_BODY_SIZE = 4 * 1024 * 1024  # a wire frame's limit
MAX_AAD_SIZE = 64 * 1024
COMMITMENT_SIZE = 32
_BODY_NONCE = bytes(NONCE_SIZE)  # the body key is used for this one message only


@dataclass(frozen=True, slots=True)
class Recipient:
    """One wrapped copy of the content key."""

    suite: Suite
    key_id: bytes
    wrap: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedRequest:
    """A sealed request as sent (``to_bytes``) or as read (``from_bytes``, no content key)."""

    recipients: tuple[Recipient, ...]
    commitment: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    _content_key: bytes | None = field(default=None, repr=False)

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """The keys (and so the workers) that can open this request."""
        return tuple(r.key_id for r in self.recipients)

    @property
    def content_key(self) -> bytes:
        """The key the answer is sealed under; only the sealing client knows it."""
        if self._content_key is None:
            raise SealError("a request read from bytes does not carry its content key")
        return self._content_key

    def header(self) -> bytes:
        parts = [bytes([VERSION, len(self.recipients)])]
        parts += [bytes([params(r.suite).wire_id]) + r.key_id + r.wrap for r in self.recipients]
        parts += [self.commitment, len(self.ciphertext).to_bytes(4, "big")]
        return b"".join(parts)

    def to_bytes(self) -> bytes:
        return self.header() + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedRequest:
        """Parse strictly: known version and suites, bounded counts and sizes, nothing left over."""
        reader = Reader(data, what="sealed request")
        version = reader.u8("version")
        if version != VERSION:
            raise SealError(f"sealed request version {version} is not supported (this node reads {VERSION})")
        count = reader.u8("recipient count")
        if not 1 <= count <= MAX_RECIPIENTS:
            raise SealError(f"a sealed request names 1..{MAX_RECIPIENTS} recipients, not {count}")
        recipients = tuple(_read_recipient(reader) for _ in range(count))
        if len({r.key_id for r in recipients}) != count:
            raise SealError("a sealed request names the same key twice")
        commitment = reader.take(COMMITMENT_SIZE, "commitment")
        size = reader.u32("body length")
        if not TAG_SIZE <= size <= MAX_BODY_SIZE + TAG_SIZE:
            raise SealError(f"sealed body of {size} bytes is out of bounds")
        ciphertext = reader.take(size, "body")
        reader.end()
        return cls(recipients, commitment, ciphertext)


def _read_recipient(reader: Reader) -> Recipient:
    wire_id = reader.u8("suite")
    suite = suite_by_id(wire_id)
    if suite is None:
        raise SealError(f"unknown sealing suite id {wire_id}")
    key_id = reader.take(KEY_ID_SIZE, "key id")
    return Recipient(suite, key_id, reader.take(params(suite).wrap_size, "wrapped key"))


@dataclass(frozen=True, slots=True)
class OpenedRequest:
    body: bytes
    content_key: bytes = field(repr=False)


def _check_aad(aad: bytes) -> bytes:
    if not isinstance(aad, bytes) or len(aad) > MAX_AAD_SIZE:
        raise SealError(f"aad must be bytes of at most {MAX_AAD_SIZE}")
    return aad


def _wrap_info(suite: Suite, key_id: bytes, aad: bytes) -> bytes:
    return b"cocoon-e2ee/v1/wrap" + bytes([params(suite).wire_id]) + key_id + hashlib.sha256(aad).digest()


def _body_aad(header: bytes, aad: bytes) -> bytes:
    return b"cocoon-e2ee/v1/body" + len(aad).to_bytes(4, "big") + aad + header


def _wrap(content_key: bytes, recipient: RecipientKey, aad: bytes) -> Recipient:
    suite = params(recipient.suite)
    try:
        wrap = suite.hpke.encrypt(
            content_key, recipient.public_key, info=_wrap_info(recipient.suite, recipient.key_id, aad)
        )
    except ValueError as exc:  # e.g. a low-order X25519 point: no shared secret
        raise SealError(f"cannot seal to worker {recipient.worker_id!r}: {exc}") from None
    if len(wrap) != suite.wrap_size:
        raise SealError(f"HPKE gave a {len(wrap)}-byte wrap, {suite.wrap_size} expected")
    return Recipient(recipient.suite, recipient.key_id, wrap)


def seal_request(body: bytes, recipients: Sequence[RecipientKey], *, aad: bytes) -> SealedRequest:
    """Seal ``body`` for every recipient; the result keeps the content key for the answer."""
    if not isinstance(body, bytes) or len(body) > MAX_BODY_SIZE:
        raise SealError(f"a sealed body must be bytes of at most {MAX_BODY_SIZE}")
    _check_aad(aad)
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise SealError(f"seal to 1..{MAX_RECIPIENTS} recipients, not {len(recipients)}")
    if len({r.key_id for r in recipients}) != len(recipients):
        raise SealError("the same recipient key is given twice")
    content_key = os.urandom(CONTENT_KEY_SIZE)
    wraps = tuple(_wrap(content_key, r, aad) for r in recipients)
    commitment = expand(content_key, "commit", COMMITMENT_SIZE)
    unsealed = SealedRequest(wraps, commitment, b"\x00" * (len(body) + TAG_SIZE))  # the header's lengths
    cipher = ChaCha20Poly1305(expand(content_key, "request-body"))
    ciphertext = cipher.encrypt(_BODY_NONCE, body, _body_aad(unsealed.header(), aad))
    return SealedRequest(wraps, commitment, ciphertext, content_key)


def open_request(data: bytes | SealedRequest, keypair: SealKeyPair, *, aad: bytes) -> OpenedRequest:
    """Open a request sealed to ``keypair`` (its bytes, or as already parsed); :class:`SealError` if
    it is not, or anything changed."""
    _check_aad(aad)
    sealed = data if isinstance(data, SealedRequest) else SealedRequest.from_bytes(data)
    entry = next((r for r in sealed.recipients if r.key_id == keypair.key_id), None)
    if entry is None:
        raise SealError(f"the request is not sealed to key {keypair.key_id.hex()}")
    if entry.suite is not keypair.suite:
        raise SealError(
            f"key {keypair.key_id.hex()} is a {keypair.suite} key, the request names {entry.suite}"
        )
    suite = params(keypair.suite)
    try:
        content_key = suite.hpke.decrypt(
            entry.wrap, keypair.private_key, info=_wrap_info(entry.suite, entry.key_id, aad)
        )
    except InvalidTag:
        raise SealError("the wrapped content key does not open (tampered, or another aad)") from None
    if len(content_key) != CONTENT_KEY_SIZE or not hmac.compare_digest(
        expand(content_key, "commit", COMMITMENT_SIZE), sealed.commitment
    ):
        raise SealError("the content key does not match the request's commitment")
    cipher = ChaCha20Poly1305(expand(content_key, "request-body"))
    try:
        body = cipher.decrypt(_BODY_NONCE, sealed.ciphertext, _body_aad(sealed.header(), aad))
    except InvalidTag:
        raise SealError("the sealed body does not open (tampered, or another aad)") from None
    return OpenedRequest(body, content_key)
