from __future__ import annotations

import pytest

from cocoon.e2ee import SealKeyPair, Suite, routing_aad


@pytest.fixture(scope="session")
def pairs() -> dict[Suite, list[SealKeyPair]]:
    """Three key pairs per suite (made once: hybrid keys cost ~0.1 ms each, but add up in loops)."""
    return {suite: [SealKeyPair.generate(suite) for _ in range(3)] for suite in Suite}


@pytest.fixture
def aad() -> bytes:
    return routing_aad("/v1/chat/completions", "qwen", 64, "env-1")
