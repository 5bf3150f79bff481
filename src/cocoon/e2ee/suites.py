"""The HPKE suites (RFC 9180) a request can be sealed under, and the one AEAD used beside them.

Both suites use HKDF-SHA256 and ChaCha20-Poly1305: constant-time in software (no AES-NI needed
inside every TEE), and the classical suite is then exactly RFC 9180's Appendix A.2, whose test
vectors check it. The hybrid KEM is ML-KEM-768 + X25519 (secure while either part holds).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hpke

__all__ = [
    "CONTENT_KEY_SIZE",
    "TAG_SIZE",
    "Suite",
    "SuiteParams",
    "expand",
    "hkdf_expand",
    "params",
    "suite_by_id",
]

CONTENT_KEY_SIZE = 32  # ChaCha20-Poly1305 key
TAG_SIZE = 16  # Poly1305 tag
NONCE_SIZE = 12


class Suite(enum.StrEnum):
    HYBRID = "mlkem768-x25519"  # the default: post-quantum and classical at once
    CLASSICAL = "x25519"  # the configured fallback: DHKEM(X25519, HKDF-SHA256)


@dataclass(frozen=True, slots=True)
class SuiteParams:
    wire_id: int  # the suite's byte in a sealed request
    public_key_size: int
    enc_size: int  # the KEM's encapsulated key
    hpke: hpke.Suite

    @property
    def wrap_size(self) -> int:
        """An HPKE-wrapped content key: enc || ciphertext of the key || tag."""
        return self.enc_size + CONTENT_KEY_SIZE + TAG_SIZE


_AEAD = hpke.AEAD.CHACHA20_POLY1305
_PARAMS = {
    Suite.HYBRID: SuiteParams(
        wire_id=1,
        public_key_size=1184 + 32,  # ML-KEM-768 encapsulation key || X25519 public key
        enc_size=hpke.KEM.MLKEM768_X25519.enc_length(),
        hpke=hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, _AEAD),
    ),
    Suite.CLASSICAL: SuiteParams(
        wire_id=2,
        public_key_size=32,
        enc_size=hpke.KEM.X25519.enc_length(),
        hpke=hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, _AEAD),
    ),
}
_BY_ID = {p.wire_id: suite for suite, p in _PARAMS.items()}


def params(suite: Suite) -> SuiteParams:
    return _PARAMS[suite]


def suite_by_id(wire_id: int) -> Suite | None:
    return _BY_ID.get(wire_id)


def expand(secret: bytes, label: str, length: int = CONTENT_KEY_SIZE) -> bytes:
    """One key from a uniformly random secret, separated from every other use by ``label``."""
    info = b"cocoon-e2ee/v1/" + label.encode()
    return hkdf_expand(secret, info, length)


_HASH_SIZE = 32
_MAX_EXPAND = 255 * _HASH_SIZE


def hkdf_expand(secret: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand-SHA256 (RFC 5869, 2.3) with one C HMAC call per block: the same bytes as
    cryptography's ``HKDFExpand`` at a tenth of its cost (no objects, no ABC checks per call)."""
    if not 1 <= length <= _MAX_EXPAND:
        raise ValueError(f"HKDF-Expand-SHA256 gives 1..{_MAX_EXPAND} bytes, not {length}")
    block = hmac.digest(secret, info + b"\x01", "sha256")
    if length <= _HASH_SIZE:
        return block[:length]
    blocks = [block]
    for counter in range(2, -(-length // _HASH_SIZE) + 1):
        block = hmac.digest(secret, block + info + bytes([counter]), "sha256")
        blocks.append(block)
    return b"".join(blocks)[:length]
