"""A :class:`~cocoon.localnet.network.LocalNetwork` running on its own event loop in a background thread.

Lets synchronous property tests (hypothesis) talk real HTTP to a real network: every example is an
ordinary blocking request with a deadline, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cocoon.inference import Script, ScriptedEngine, Usage
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = ["MODEL", "background_network"]

MODEL = "scripted-model"


@contextmanager
def background_network(home: Path, *, chunks: int = 3, **config: object) -> Iterator[LocalNetwork]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="cocoon-net", daemon=True)
    thread.start()
    # Usage that matches what is streamed: an over-reporting worker would be suspended by the audit.
    usage = Usage(prompt_tokens=1, completion_tokens=chunks)
    engine = ScriptedEngine(Script(chunks=chunks, chunk_bytes=16, usage=usage))
    network = LocalNetwork(
        LocalNetworkConfig.ephemeral(home, workers=1, **config), engine_factory=lambda _i: engine
    )
    try:
        asyncio.run_coroutine_threadsafe(network.start(), loop).result(timeout=60)
        yield network
    finally:
        asyncio.run_coroutine_threadsafe(network.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
