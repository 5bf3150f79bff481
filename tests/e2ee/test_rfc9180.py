"""RFC 9180 Appendix A test vectors for the classical suite's KEM and KDF (A.2.1: exactly the
classical suite, ChaCha20Poly1305; A.1.1: the same KEM and KDF with AES-128-GCM), base mode,
sequence number 0.

The vectors' encryptions carry an AEAD aad ("Count-0"); ``cryptography``'s public ``hpke.Suite``
takes only ``info`` (its single-shot aad is empty), so the vector goes through the library's private
``_decrypt_with_aad`` and through an RFC-faithful reference (``hpke_reference``). The reference is
then used to open what the public API and :func:`seal_request` make: the classical suite is RFC 9180.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from cocoon.e2ee import SealKeyPair, Suite, seal_request
from cocoon.e2ee.request import SealedRequest, _wrap_info
from cocoon.e2ee.suites import params
from tests.e2ee import hpke_reference as ref

INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
PT = bytes.fromhex(
    "4265617574792069732074727574682c20747275746820626561757479"
)  # "Beauty is truth, truth beauty"
AAD0 = bytes.fromhex("436f756e742d30")  # "Count-0"


@dataclass(frozen=True)
class Vector:
    name: str
    aead: str
    sk_rm: str
    pk_rm: str
    enc: str
    shared_secret: str
    key: str
    base_nonce: str
    ct0: str


VECTORS = [
    Vector(
        name="A.2.1",
        aead="ChaCha20Poly1305",
        sk_rm="8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
        pk_rm="4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
        enc="1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
        shared_secret="0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7",
        key="ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
        base_nonce="5c4d98150661b848853b547f",
        ct0="1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
    ),
    Vector(
        name="A.1.1",
        aead="AES-128-GCM",
        sk_rm="4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
        pk_rm="3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
        enc="37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
        shared_secret="fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc",
        key="4531685d41d65f03dc48f6b8302c05b0",
        base_nonce="56d890e5accaaf011cff4b7d",
        ct0="f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
    ),
]
LIBRARY_AEAD = {"ChaCha20Poly1305": hpke.AEAD.CHACHA20_POLY1305, "AES-128-GCM": hpke.AEAD.AES_128_GCM}


def _sk(v: Vector) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(v.sk_rm))


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_reference_reproduces_the_vector(v: Vector) -> None:
    sk = _sk(v)
    assert sk.public_key().public_bytes_raw().hex() == v.pk_rm
    ss = ref.shared_secret(sk, bytes.fromhex(v.enc))
    assert ss.hex() == v.shared_secret
    key, base_nonce = ref.key_schedule(ss, INFO, v.aead)
    assert (key.hex(), base_nonce.hex()) == (v.key, v.base_nonce)
    aead = ChaCha20Poly1305(key) if v.aead == "ChaCha20Poly1305" else AESGCM(key)
    assert aead.decrypt(ref.nonce(base_nonce, 0), bytes.fromhex(v.ct0), AAD0) == PT


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_library_hpke_decrypts_the_vector(v: Vector) -> None:
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, LIBRARY_AEAD[v.aead])
    ciphertext = bytes.fromhex(v.enc + v.ct0)  # single-shot HPKE output: enc || ct
    opened = rust_openssl.hpke._decrypt_with_aad(suite, ciphertext, _sk(v), info=INFO, aad=AAD0)
    assert opened == PT
    with pytest.raises(InvalidTag):  # another info: another key schedule
        rust_openssl.hpke._decrypt_with_aad(suite, ciphertext, _sk(v), info=INFO + b"!", aad=AAD0)


def test_the_classical_suite_is_the_vectors_suite() -> None:
    suite = params(Suite.CLASSICAL)
    sk = _sk(VECTORS[0])
    sealed = suite.hpke.encrypt(PT, sk.public_key(), info=INFO)  # the public API, empty aad
    enc, ct = sealed[: suite.enc_size], sealed[suite.enc_size :]
    key, base_nonce = ref.key_schedule(ref.shared_secret(sk, enc), INFO, "ChaCha20Poly1305")
    assert ChaCha20Poly1305(key).decrypt(ref.nonce(base_nonce, 0), ct, b"") == PT


def test_a_sealed_requests_wrap_is_plain_rfc9180_hpke() -> None:
    sk = _sk(VECTORS[0])
    pair = SealKeyPair(Suite.CLASSICAL, sk, sk.public_key().public_bytes_raw())
    aad = b"routing"
    sealed = seal_request(b"body", [pair.recipient()], aad=aad)
    (entry,) = SealedRequest.from_bytes(sealed.to_bytes()).recipients
    enc, ct = entry.wrap[:32], entry.wrap[32:]
    info = _wrap_info(Suite.CLASSICAL, pair.key_id, aad)
    key, base_nonce = ref.key_schedule(ref.shared_secret(sk, enc), info, "ChaCha20Poly1305")
    assert ChaCha20Poly1305(key).decrypt(ref.nonce(base_nonce, 0), ct, b"") == sealed.content_key


def test_hybrid_suite_sizes() -> None:
    hybrid = params(Suite.HYBRID)
    assert (hybrid.public_key_size, hybrid.enc_size) == (1216, 1120)  # ML-KEM-768 ek/ct + X25519
    assert len(SealKeyPair.generate(Suite.HYBRID).public_bytes) == 1216
