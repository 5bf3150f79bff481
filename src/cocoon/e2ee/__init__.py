"""End-to-end sealing between an app's client and the model's worker: the proxy routes, meters and
bills, but never reads a sealed prompt or answer.

- :mod:`~cocoon.e2ee.suites`: the HPKE suites (hybrid ML-KEM-768 + X25519 by default, X25519 alone
  as the fallback), both with HKDF-SHA256 and ChaCha20-Poly1305.
- :mod:`~cocoon.e2ee.keys`: workers' key pairs and the recipient keys clients read from claims.
- :mod:`~cocoon.e2ee.request`: a request body sealed once, its content key wrapped per worker.
- :mod:`~cocoon.e2ee.stream`: the answer as ordered AEAD frames with an authenticated end marker.
"""

from cocoon.e2ee.aad import MAX_ENVELOPE_ID, STALE_PHRASE, routing_aad
from cocoon.e2ee.errors import SealError
from cocoon.e2ee.keys import KEY_ID_SIZE, RecipientKey, SealKeyPair
from cocoon.e2ee.request import (
    MAX_BODY_SIZE,
    MAX_RECIPIENTS,
    OpenedRequest,
    SealedRequest,
    open_request,
    seal_request,
)
from cocoon.e2ee.stream import MAX_CHUNK_SIZE, PAD_TO, AnswerOpener, AnswerSealer
from cocoon.e2ee.suites import Suite

__all__ = [
    "KEY_ID_SIZE",
    "MAX_BODY_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_ENVELOPE_ID",
    "MAX_RECIPIENTS",
    "PAD_TO",
    "STALE_PHRASE",
    "AnswerOpener",
    "AnswerSealer",
    "OpenedRequest",
    "RecipientKey",
    "SealError",
    "SealKeyPair",
    "SealedRequest",
    "Suite",
    "open_request",
    "routing_aad",
    "seal_request",
]
