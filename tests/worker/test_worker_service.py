"""The worker as a service in a small network with scripted engines: its own log, its announced
capabilities, and a 400 naming the parameter for what its engine cannot do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionToolParam

from cocoon.inference import Capability, Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node import Service

MODEL = "scripted-model"
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
]


async def _network(tmp_path: Path, engines: list[ScriptedEngine]) -> AsyncIterator[LocalNetwork]:
    cfg = LocalNetworkConfig.ephemeral(tmp_path, workers=len(engines))
    network = LocalNetwork(cfg, engine_factory=lambda i: engines[i])
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


async def test_each_worker_in_one_process_keeps_only_its_own_log_lines(tmp_path: Path) -> None:
    engines = [ScriptedEngine(Script(chunks=1)), ScriptedEngine(Script(chunks=1))]
    async for network in _network(tmp_path, engines):
        first, second = network.workers
        assert isinstance(first, Service) and first.log.name != second.log.name
        async with httpx.AsyncClient() as http:
            logs = [(await http.get(f"{w.health_url}/logs")).json()["lines"] for w in (first, second)]
        for worker, lines in zip((first, second), logs, strict=True):
            assert any("serving scripted-model" in line for line in lines)
            assert all(f" {worker.log.name}: " in line for line in lines), lines
        # Lines logged by the proxy (or any other logger) in the same process reach no worker's view.
        assert not any("cocoon.proxy" in line for lines in logs for line in lines)


async def test_worker_announces_and_enforces_its_engines_capabilities(tmp_path: Path) -> None:
    plain = ScriptedEngine(Script(chunks=1), capabilities=frozenset({Capability.CHAT}))
    async for network in _network(tmp_path, [plain]):
        worker = network.workers[0]
        assert worker.announce()["capabilities"] == ["chat"]
        assert worker.statistics()["capabilities"] == ["chat"]
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            with pytest.raises(openai.BadRequestError) as info:
                await oai.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "hi"}],
                    tools=TOOLS,
                )
            assert "tools" in str(info.value)
            with pytest.raises(openai.BadRequestError):
                await oai.completions.create(model=MODEL, prompt="hi")
            answer = await oai.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        assert answer.choices[0].message.content
        assert len(plain.calls) == 1  # the refused requests never reached the engine


async def test_requests_needing_tools_go_only_to_workers_that_have_them(tmp_path: Path) -> None:
    plain = ScriptedEngine(Script(chunks=1), capabilities=frozenset({Capability.CHAT}))
    capable = ScriptedEngine(Script(chunks=1), capabilities=frozenset({Capability.CHAT, Capability.TOOLS}))
    async for network in _network(tmp_path, [plain, capable]):
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            (entry,) = (await oai.models.list()).data
            assert (entry.model_extra or {})["capabilities"] == ["chat", "tools"]  # the union over workers
            for _ in range(4):
                await oai.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=TOOLS
                )
            with pytest.raises(openai.BadRequestError) as info:
                await oai.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True
                )
        assert "logprobs" in str(info.value)
        assert len(capable.calls) == 4 and plain.calls == []
