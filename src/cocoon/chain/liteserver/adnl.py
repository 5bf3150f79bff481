"""The server side of ADNL over TCP (what TON liteservers speak), sans-IO.

A client opens with 256 bytes: the server key id (sha256 of the TL-tagged Ed25519 key), its own
Ed25519 key, sha256 of 160 random bytes, and those bytes AES-CTR encrypted under the x25519 secret
shared with the server (both Ed25519 keys taken to Montgomery form). The random bytes key both
directions (AES-256-CTR). Every packet then is ``len:uint32le nonce:32 payload sha256(nonce+payload)``
encrypted as one stream; ``len`` counts nonce, payload and hash.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cocoon.chain.errors import ChainError

__all__ = ["HANDSHAKE_BYTES", "AdnlError", "AdnlSession", "ServerKey", "frame"]

HANDSHAKE_BYTES = 256
MAX_PACKET = 1 << 20  # what one client packet may carry: queries are small (a message BOC at most)
_PUB_ED25519_TAG = bytes.fromhex("c6b41348")  # pub.ed25519 constructor, little-endian
_P = 2**255 - 19


class AdnlError(ChainError):
    """A peer broke the ADNL framing or handshake; the connection is dropped."""


def _ed25519_to_x25519_public(key: bytes) -> bytes:
    """The birational map u = (1 + y) / (1 - y) from Edwards y to Montgomery u (RFC 7748)."""
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    if y >= _P or (1 - y) % _P == 0:
        raise AdnlError("not an Ed25519 public key")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


class ServerKey:
    """The server's Ed25519 identity (a 32-byte seed) and its x25519 form for the handshake."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an ADNL key seed is 32 bytes")
        self._ed = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._ed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # the x25519 scalar of an Ed25519 key is the first half of sha512(seed) (X25519 clamps it)
        self._x = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
        self.key_id = hashlib.sha256(_PUB_ED25519_TAG + self.public).digest()

    def shared_secret(self, client_ed25519: bytes) -> bytes:
        peer = X25519PublicKey.from_public_bytes(_ed25519_to_x25519_public(client_ed25519))
        return self._x.exchange(peer)


def _ctr(key: bytes, iv: bytes) -> CipherContext:
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()  # CTR: encrypting = decrypting


class AdnlSession:
    """One accepted connection after its handshake: decrypts incoming bytes into payloads and
    encrypts outgoing payloads. Feed it what the socket gave; it keeps partial packets."""

    def __init__(self, key: ServerKey, handshake: bytes) -> None:
        if len(handshake) != HANDSHAKE_BYTES:
            raise AdnlError(f"the handshake is {HANDSHAKE_BYTES} bytes")
        key_id, client_pub, checksum, sealed = (
            handshake[:32],
            handshake[32:64],
            handshake[64:96],
            handshake[96:],
        )
        if key_id != key.key_id:
            raise AdnlError("the handshake names another server key")
        shared = key.shared_secret(client_pub)
        rand = _ctr(shared[:16] + checksum[16:32], checksum[:4] + shared[20:32]).update(sealed)
        if hashlib.sha256(rand).digest() != checksum:
            raise AdnlError("the handshake does not decrypt under this server key")
        # the client receives with rand[0:32]/rand[64:80] and sends with rand[32:64]/rand[80:96]
        self._tx = _ctr(rand[0:32], rand[64:80])
        self._rx = _ctr(rand[32:64], rand[80:96])
        self._plain = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Decrypt ``data``; return each complete packet's payload (checked against its hash)."""
        self._plain += self._rx.update(data)
        out: list[bytes] = []
        while len(self._plain) >= 4:
            size = int.from_bytes(self._plain[:4], "little")
            if size < 64 or size > MAX_PACKET:
                raise AdnlError(f"packet of {size} bytes")
            if len(self._plain) < 4 + size:
                break
            body = bytes(self._plain[4 : 4 + size])
            del self._plain[: 4 + size]
            if hashlib.sha256(body[:-32]).digest() != body[-32:]:
                raise AdnlError("packet checksum mismatch")
            out.append(body[32:-32])
        return out

    def seal(self, payload: bytes) -> bytes:
        """One packet carrying ``payload``, encrypted for the client (b"" is the handshake reply)."""
        return self._tx.update(frame(payload))


def frame(payload: bytes) -> bytes:
    body = os.urandom(32) + payload
    return (len(body) + 32).to_bytes(4, "little") + body + hashlib.sha256(body).digest()
