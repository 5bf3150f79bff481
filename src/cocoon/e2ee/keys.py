"""Sealing key pairs (a worker's, kept in its TEE) and recipient keys (what a client seals to).

A key's public bytes are its KEM public key: ML-KEM-768's encapsulation key followed by the X25519
public key for the hybrid suite, the X25519 public key alone for the classical one. Its id is
SHA-256(suite name, 0, public bytes) cut to 16 bytes: a claim cannot pair a key with another suite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from cocoon.e2ee.errors import SealError
from cocoon.e2ee.suites import Suite, expand, params

__all__ = ["KEY_ID_SIZE", "PrivateKey", "PublicKey", "RecipientKey", "SealKeyPair", "key_id"]

KEY_ID_SIZE = 16
MIN_SEED_SIZE = 32
MAX_WORKER_ID = 256

PrivateKey = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey
PublicKey = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
_MLKEM_PUBLIC = 1184


def key_id(suite: Suite, public_bytes: bytes) -> bytes:
    return hashlib.sha256(suite.value.encode() + b"\x00" + public_bytes).digest()[:KEY_ID_SIZE]


def _load_public(suite: Suite, public_bytes: bytes) -> PublicKey:
    """The KEM public key in ``public_bytes`` (its size checked); ValueError if it is not one."""
    if len(public_bytes) != params(suite).public_key_size:
        raise ValueError(
            f"a {suite} public key has {params(suite).public_key_size} bytes, not {len(public_bytes)}"
        )
    if suite is Suite.CLASSICAL:
        return x25519.X25519PublicKey.from_public_bytes(public_bytes)
    pq = mlkem.MLKEM768PublicKey.from_public_bytes(public_bytes[:_MLKEM_PUBLIC])
    return hpke.MLKEM768X25519PublicKey(
        pq, x25519.X25519PublicKey.from_public_bytes(public_bytes[_MLKEM_PUBLIC:])
    )


class SealKeyPair:
    """A private sealing key: :meth:`generate` fresh, or :meth:`derive` from a sealed secret."""

    __slots__ = ("_private", "key_id", "public_bytes", "suite")

    def __init__(self, suite: Suite, private: PrivateKey, public_bytes: bytes) -> None:
        self.suite = suite
        self._private = private
        self.public_bytes = public_bytes
        self.key_id = key_id(suite, public_bytes)

    @classmethod
    def generate(cls, suite: Suite = Suite.HYBRID) -> SealKeyPair:
        if suite is Suite.CLASSICAL:
            return cls._classical(x25519.X25519PrivateKey.generate())
        return cls._hybrid(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    @classmethod
    def derive(cls, suite: Suite, seed: bytes) -> SealKeyPair:
        """The same key for the same (suite, seed): ``seed`` is a secret of at least 32 random bytes."""
        if not isinstance(seed, bytes) or len(seed) < MIN_SEED_SIZE:
            raise SealError(f"a key seed must be at least {MIN_SEED_SIZE} bytes")
        suite = Suite(suite)
        ecdh = x25519.X25519PrivateKey.from_private_bytes(expand(seed, f"key/{suite}/x25519"))
        if suite is Suite.CLASSICAL:
            return cls._classical(ecdh)
        return cls._hybrid(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(expand(seed, f"key/{suite}/mlkem", 64)), ecdh
        )

    @classmethod
    def _classical(cls, key: x25519.X25519PrivateKey) -> SealKeyPair:
        return cls(Suite.CLASSICAL, key, key.public_key().public_bytes_raw())

    @classmethod
    def _hybrid(cls, pq: mlkem.MLKEM768PrivateKey, ecdh: x25519.X25519PrivateKey) -> SealKeyPair:
        public = pq.public_key().public_bytes_raw() + ecdh.public_key().public_bytes_raw()
        return cls(Suite.HYBRID, hpke.MLKEM768X25519PrivateKey(pq, ecdh), public)

    @property
    def private_key(self) -> PrivateKey:
        return self._private

    def claim(self) -> dict[str, str]:
        """What goes into the attested claims (``extra["e2ee"]``) for clients to seal to."""
        return {"suite": self.suite.value, "public_key": self.public_bytes.hex(), "key_id": self.key_id.hex()}

    def recipient(self, worker_id: str = "") -> RecipientKey:
        return RecipientKey.from_claim(worker_id, self.claim())

    def __repr__(self) -> str:
        return f"SealKeyPair({self.suite}, key_id={self.key_id.hex()})"


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A worker's public sealing key, read from its verified attested claims."""

    worker_id: str
    suite: Suite
    public_bytes: bytes = field(repr=False)
    key_id: bytes
    public_key: PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_claim(cls, worker_id: str, claim: Mapping[str, Any]) -> RecipientKey:
        """Check one ``extra["e2ee"]`` entry; :class:`SealError` names what is wrong."""
        if not isinstance(worker_id, str) or len(worker_id) > MAX_WORKER_ID:
            raise SealError(f"worker id must be a string of at most {MAX_WORKER_ID} characters")
        if not isinstance(claim, Mapping):
            raise SealError("an e2ee claim must be a mapping")
        name = claim.get("suite")
        if not isinstance(name, str) or name not in set(Suite):
            raise SealError(f"unknown sealing suite {name!r}")
        suite = Suite(name)
        public_bytes = _hex_field(claim, "public_key", params(suite).public_key_size)
        claimed_id = _hex_field(claim, "key_id", KEY_ID_SIZE)
        if claimed_id != key_id(suite, public_bytes):
            raise SealError("the claim's key_id is not the id of its public key")
        try:
            public_key = _load_public(suite, public_bytes)
        except ValueError as exc:
            raise SealError(f"the claim's public key is not a {suite} key: {exc}") from None
        return cls(worker_id, suite, public_bytes, claimed_id, public_key)


def _hex_field(claim: Mapping[str, Any], name: str, size: int) -> bytes:
    text = claim.get(name)
    if not isinstance(text, str) or len(text) != 2 * size:
        raise SealError(f"claim field {name!r} must be {2 * size} hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SealError(f"claim field {name!r} is not hex") from None
