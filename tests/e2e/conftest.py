"""A whole local network per module: proxy, workers, client, over RA-TLS with sim attestation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker import EngineSettings


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def model_network(tmp_path_factory: object) -> AsyncIterator[LocalNetwork]:
    """The real embedded model (SmolLM2-135M) behind one worker."""
    home: Path = tmp_path_factory.mktemp("net")  # type: ignore[attr-defined]
    config = LocalNetworkConfig.ephemeral(home, workers=1, engine=EngineSettings(n_ctx=1024))
    async with LocalNetwork(config) as network:
        yield network
