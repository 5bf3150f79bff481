"""Streaming stays streaming: coalescing on the way (worker, net, client) only joins what has
already arrived, so every token reaches the app while the engine is still blocked before the next.

The engine produces each token only when the test releases it, and the test releases token k+1
only after the app has seen token k: had any hop waited to batch, the app would never see token k
and the test would time out. The gaps at the app are then the engine's gaps by construction.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.inference import Capability, Endpoint, EngineResponse, build_engine_app, running_server
from cocoon.inference._protocol import SSE_HEADERS
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker import EngineSettings

TOKENS = 12
MODEL = "gated-model"


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return _sse(
        {
            "id": "chatcmpl-g",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [choice],
        }
    )


class GatedEngine:
    """Streams ``tok0 … tok{n-1}``, each only after ``release()``; then usage and [DONE] at once."""

    model_name = MODEL
    capabilities = frozenset({Capability.CHAT})

    def __init__(self) -> None:
        self._gate: asyncio.Queue[None] = asyncio.Queue()
        self.produced: list[float] = []  # when each token left the engine

    def release(self) -> None:
        self._gate.put_nowait(None)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def healthy(self) -> bool:
        return True

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        return EngineResponse(status=200, headers=SSE_HEADERS, body=self._tokens())

    async def _tokens(self) -> AsyncIterator[bytes]:
        yield _chunk({"role": "assistant", "content": ""})
        for k in range(TOKENS):
            await self._gate.get()
            self.produced.append(time.perf_counter())
            yield _chunk({"content": f"tok{k} "})
        yield _chunk({}, "stop")
        usage = {"prompt_tokens": 5, "completion_tokens": TOKENS, "total_tokens": 5 + TOKENS}
        yield _sse(
            {
                "id": "chatcmpl-g",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
        )
        yield b"data: [DONE]\n\n"


async def _start_network(
    stack: AsyncExitStack, home: Path, engine: GatedEngine, via_http: bool
) -> LocalNetwork:
    if via_http:  # the worker reads the engine over HTTP (HttpEngine and its lean pool)
        url = await stack.enter_async_context(running_server(build_engine_app(engine)))
        config = LocalNetworkConfig.ephemeral(home, workers=1, engine=EngineSettings(kind="http", url=url))
        network = LocalNetwork(config)
    else:  # the engine inside the worker
        network = LocalNetwork(
            LocalNetworkConfig.ephemeral(home, workers=1), engine_factory=lambda _i: engine
        )
    return await stack.enter_async_context(network)


@pytest.mark.parametrize("via_http", [True, False], ids=["http-upstream", "in-worker"])
async def test_each_token_reaches_the_app_before_the_engine_makes_the_next(
    tmp_path: Path, via_http: bool
) -> None:
    engine = GatedEngine()
    async with AsyncExitStack() as stack:
        network = await _start_network(stack, tmp_path, engine, via_http)
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        seen: list[float] = []
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("POST", f"{network.base_url}/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            text = ""
            chunks = response.aiter_raw()
            for k in range(TOKENS):
                engine.release()
                async with asyncio.timeout(10):  # a hop that waits to batch never gets here
                    while f"tok{k} " not in text:
                        text += (await anext(chunks)).decode()
                seen.append(time.perf_counter())
                assert f"tok{k + 1} " not in text
            rest = "".join([part.decode() async for part in chunks])
        assert rest.rstrip().endswith("data: [DONE]")
        # The app's gaps are the engine's: nothing held a token back until the next one came.
        assert len(engine.produced) == len(seen) == TOKENS
        assert all(s > p for s, p in zip(seen, engine.produced, strict=True))
        assert all(s < p for s, p in zip(seen, engine.produced[1:], strict=False))
