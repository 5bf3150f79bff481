"""Errors raised by inference engines.

    CocoonError
    └── EngineError                the inference engine failed or refused
        ├── EngineUnavailable      the engine is down, closed, unreachable or timed out
        │   └── EngineTimeout      the upstream did not answer in time (connect, read, write or pool)
        ├── EngineBusy             the engine's queue is full; retry later or elsewhere
        ├── EngineProtocolError    the engine sent bytes that are not OpenAI-shaped (bad SSE, bad JSON, bad usage)
        └── ModelError             a model file is missing or cannot be hashed

An upstream that answers with a non-2xx status is *not* an error here: the engine hands the status and
the upstream's JSON error body back as an ``EngineResponse`` so it can be relayed unchanged.
"""

from __future__ import annotations

from cocoon.errors import CocoonError

__all__ = [
    "EngineBusy",
    "EngineError",
    "EngineProtocolError",
    "EngineTimeout",
    "EngineUnavailable",
    "ModelError",
]


class EngineError(CocoonError):
    """The inference engine failed or refused a request."""


class EngineUnavailable(EngineError):
    """The engine cannot serve: not started, closed, upstream down or the connection broke."""


class EngineTimeout(EngineUnavailable):
    """The upstream did not answer within the configured timeout."""


class EngineBusy(EngineError):
    """The engine's queue is full; the request was refused before any work was done."""


class EngineProtocolError(EngineError):
    """The engine sent something that is not a valid OpenAI response (bad SSE, JSON or usage)."""


class ModelError(EngineError):
    """A model file or directory is missing, empty or unreadable."""
