"""Shared fixtures: the embedded model is loaded once per test session, in the session event loop.

Tests that use these fixtures run in that loop too (``pytestmark = SESSION_LOOP``), because the
engine's futures and the in-process uvicorn server belong to the loop that created them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from cocoon.inference import EmbeddedEngine, build_engine_app, running_server

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedded() -> AsyncIterator[EmbeddedEngine]:
    engine = EmbeddedEngine(n_ctx=1024, seed=1234, max_queue=4)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedded_url(embedded: EmbeddedEngine) -> AsyncIterator[str]:
    """The session's embedded engine served over real loopback HTTP (uvicorn, port 0)."""
    async with running_server(build_engine_app(embedded)) as url:
        yield url
