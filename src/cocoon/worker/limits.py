"""The generation limit the proxy reserved for is the limit the engine gets.

The proxy reserves a client's funds for ``Request.max_tokens`` and never charges more; an engine left
to its own default could generate past that, burning the worker's GPU on tokens nobody pays for. So
the worker writes the reserved limit into the body the engine sees: a missing limit is filled in and a
larger one (``max_tokens`` or ``max_completion_tokens``) is lowered to it.
"""

from __future__ import annotations

from typing import Any

from cocoon.inference import Endpoint

__all__ = ["bound_generation"]

_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def bound_generation(endpoint: Endpoint, body: dict[str, Any], reserved_tokens: int) -> dict[str, Any]:
    """``body`` with its generation limit at most ``reserved_tokens`` (embeddings generate nothing)."""
    if endpoint is Endpoint.EMBEDDINGS or reserved_tokens <= 0:
        return body
    bounded = dict(body)
    present = [name for name in _LIMIT_FIELDS if isinstance(bounded.get(name), int)]
    if not present:
        bounded["max_tokens"] = reserved_tokens
    for name in present:
        bounded[name] = min(bounded[name], reserved_tokens)
    return bounded
