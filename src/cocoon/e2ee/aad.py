"""The associated data that binds a sealed request and its answer to the routing fields around it."""

from __future__ import annotations

import json

from cocoon.e2ee.errors import SealError

__all__ = ["MAX_ENVELOPE_ID", "STALE_PHRASE", "routing_aad"]

MAX_ENVELOPE_ID = 64  # characters of the envelope id the routing fields carry
STALE_PHRASE = "e2ee keys"  # in every refusal that a fresh worker_keys answer may cure (contract 3)


def routing_aad(endpoint: str, model: str, max_tokens: int | None, envelope_id: str) -> bytes:
    """Canonical bytes of what the proxy sees and must not change between the app and the worker."""
    if not all(isinstance(v, str) for v in (endpoint, model, envelope_id)):
        raise SealError("endpoint, model and envelope id must be strings")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0
    ):
        raise SealError("max_tokens must be a non-negative integer or None")
    if _plain(endpoint) and _plain(model) and _plain(envelope_id):
        # What json.dumps writes for strings it need not escape, without its encoder (per request).
        limit = "null" if max_tokens is None else str(int(max_tokens))
        return f'["cocoon-e2ee/v1/route","{endpoint}","{model}",{limit},"{envelope_id}"]'.encode()
    fields = ["cocoon-e2ee/v1/route", str(endpoint), model, max_tokens, envelope_id]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def _plain(text: str) -> bool:
    """Printable ASCII without a quote or backslash: JSON writes it as it is."""
    return (
        type(text) is str and text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
    )
