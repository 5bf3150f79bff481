"""Proof that a node's RA-TLS key speaks for a TON wallet (the owner of a client contract).

A client announces its wallet address as ``owner_address``; on a chain the proxy bills that
wallet's client contract, so it must not take the claim on faith: anyone could name someone else's
wallet and spend its funds. The client therefore signs its certificate's public key with the wallet
key; the proxy checks the signature against the key of the TLS session it is talking to and that
the wallet key yields the claimed address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["make_owner_proof", "owner_proof_message", "verify_owner_proof"]

_DOMAIN = b"cocoon/client-owner/v1:"


def owner_proof_message(tls_public_key: bytes) -> bytes:
    return _DOMAIN + tls_public_key


def make_owner_proof(
    sign: Callable[[bytes], bytes], wallet_public_key: bytes, tls_public_key: bytes
) -> dict[str, str]:
    """What the client puts in its handshake info under ``owner_proof``."""
    return {
        "wallet_key": wallet_public_key.hex(),
        "sig": sign(owner_proof_message(tls_public_key)).hex(),
    }


def verify_owner_proof(
    proof: Any, tls_public_key: bytes, address_of: Callable[[bytes], str], owner: str
) -> bool:
    """True when ``proof`` signs ``tls_public_key`` with a wallet key whose address is ``owner``.

    ``address_of`` maps a wallet public key to its address string (as the client announces it).
    """
    if not isinstance(proof, Mapping):
        return False
    try:
        key = bytes.fromhex(str(proof["wallet_key"]))
        sig = bytes.fromhex(str(proof["sig"]))
        Ed25519PublicKey.from_public_bytes(key).verify(sig, owner_proof_message(tls_public_key))
    except (KeyError, ValueError, InvalidSignature):
        return False
    return address_of(key) == owner
