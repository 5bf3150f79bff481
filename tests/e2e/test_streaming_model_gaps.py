"""Streaming stays streaming with the real model: each token the embedded engine (SmolLM2-135M)
hands to the worker reaches the app on its own, as soon as it is made.

The engine is wrapped only to time every chunk as it leaves it; the app times every read of the
streamed body through client → proxy → worker (RA-TLS hops, sealed end to end). A hop that waited
to batch would merge tokens into fewer reads and stretch the gaps; the test compares the two sides
of the same generation (count of separate reads, median and largest gap, per-token delay) with
margins that hold on a loaded 2-core machine, where the model's own gaps are a few to tens of ms.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.inference import EmbeddedEngine, Endpoint, EngineResponse
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

TOKENS = 32
MERGE_SLACK = 3  # reads the app may see merged when its loop is late once or twice on a busy machine
GAP_MARGIN_S = 0.040  # the app's largest gap may exceed the engine's by a scheduler hiccup, not a batch
_CONTENT = b'"content":"'


def _token_events(chunk: bytes) -> int:
    """SSE events carrying generated text in ``chunk`` (the role chunk's empty content excluded)."""
    return chunk.count(_CONTENT) - chunk.count(b'"content":""')


class TimedEngine:
    """The embedded engine, with the time each chunk carrying a token leaves it."""

    def __init__(self, inner: EmbeddedEngine) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.capabilities = inner.capabilities
        self.left: list[float] = []

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        response = await self.inner.open(endpoint, body)

        async def timed() -> AsyncIterator[bytes]:
            async for chunk in response:
                self.left.extend([time.perf_counter()] * _token_events(chunk))
                yield chunk

        return EngineResponse(
            status=response.status, headers=response.headers, body=timed(), on_close=response.aclose
        )


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.slow
async def test_each_model_token_reaches_the_app_as_it_leaves_the_engine(tmp_path: Path) -> None:
    engine = TimedEngine(EmbeddedEngine(n_ctx=512, embeddings=False, seed=7))
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    body = {
        "model": engine.model_name,
        "messages": [{"role": "user", "content": "Tell me a story about a lighthouse."}],
        "max_tokens": TOKENS,
        "ignore_eos": True,  # exactly TOKENS tokens, whatever the model would say
        "temperature": 0,
        "stream": True,
    }
    async with (
        LocalNetwork(config, engine_factory=lambda _i: engine) as network,
        httpx.AsyncClient(timeout=60) as http,
    ):
        warm = {**body, "max_tokens": 4}  # the first answer also warms every hop and the prompt cache
        assert (await http.post(f"{network.base_url}/chat/completions", json=warm)).status_code == 200
        engine.left.clear()
        arrived: list[float] = []  # one entry per token, the time of the read that brought it
        reads = 0
        async with http.stream("POST", f"{network.base_url}/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            async for chunk in reply.aiter_raw():
                now, tokens = time.perf_counter(), _token_events(chunk)
                arrived.extend([now] * tokens)
                reads += tokens > 0
                tail = chunk
        assert tail.rstrip().endswith(b"data: [DONE]")

    left = engine.left
    # Every token the engine made reached the app (tokens that end mid UTF-8 sequence may share a chunk).
    assert TOKENS - MERGE_SLACK <= len(left) == len(arrived) <= TOKENS
    # ... each in a read of its own: no hop held one back to send it with the next.
    assert reads >= len(left) - MERGE_SLACK, f"{reads} reads for {len(left)} tokens"
    engine_gaps, app_gaps = _gaps(left), _gaps(arrived)
    assert max(app_gaps) <= max(engine_gaps) + GAP_MARGIN_S
    median_engine, median_app = statistics.median(engine_gaps), statistics.median(app_gaps)
    assert abs(median_app - median_engine) <= 0.25 * median_engine + 0.002, (median_app, median_engine)
    # A token reaches the app, typically, before the engine has made the next one.
    delays = [a - e for a, e in zip(arrived, left, strict=True)]
    assert min(delays) > 0 and statistics.median(delays) < median_engine, (
        statistics.median(delays),
        median_engine,
    )
