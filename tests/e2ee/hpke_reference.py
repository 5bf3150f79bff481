"""RFC 9180 base mode for DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256, written out from the RFC with
plain primitives: an independent check of the HPKE in ``cryptography`` (and of typed-in vectors)."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

KEM_ID, KDF_ID = 0x0020, 0x0001
AEAD_IDS = {"AES-128-GCM": (0x0001, 16), "ChaCha20Poly1305": (0x0003, 32)}


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, length)


def shared_secret(sk_r: X25519PrivateKey, enc: bytes) -> bytes:
    """DHKEM(X25519, HKDF-SHA256) Decap (RFC 9180 §4.1)."""
    kem_suite = b"KEM" + KEM_ID.to_bytes(2, "big")
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + sk_r.public_key().public_bytes_raw()
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    return _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)


def key_schedule(ss: bytes, info: bytes, aead: str) -> tuple[bytes, bytes]:
    """(key, base_nonce) of the base mode key schedule (RFC 9180 §5.1)."""
    aead_id, nk = AEAD_IDS[aead]
    suite_id = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + aead_id.to_bytes(2, "big")
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, ss, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, nk)
    return key, _labeled_expand(suite_id, secret, b"base_nonce", context, 12)


def nonce(base_nonce: bytes, seq: int) -> bytes:
    return (int.from_bytes(base_nonce, "big") ^ seq).to_bytes(12, "big")
