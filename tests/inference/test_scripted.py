"""ScriptedEngine used in-process, as worker tests and benchmarks use it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cocoon.inference import (
    REFERENCE_USAGE,
    Endpoint,
    Engine,
    EngineBusy,
    EngineProtocolError,
    EngineUnavailable,
    Script,
    ScriptedEngine,
    Usage,
)

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}


async def started(engine: ScriptedEngine) -> ScriptedEngine:
    await engine.start()
    return engine


async def test_default_is_the_reference_benchmark() -> None:
    engine = await started(ScriptedEngine())
    assert isinstance(engine, Engine)
    response = await engine.open(Endpoint.CHAT, BODY)
    parts = [p async for p in response]
    assert response.usage == REFERENCE_USAGE
    stats = response.meter.statistics()
    assert stats.content_chars == 50 * 128 and stats.content_events == 50 and stats.done
    assert len(parts) == 53  # 50 deltas, the finish chunk, the usage chunk, [DONE]
    assert engine.stats.completed == 1 and engine.stats.active == 0


async def test_non_stream_completion() -> None:
    engine = await started(ScriptedEngine(Script(chunks=2, chunk_bytes=3)))
    response = await engine.open(Endpoint.COMPLETIONS, {"prompt": "x"})
    body = json.loads(await response.read())
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "000000"
    assert response.usage == REFERENCE_USAGE


async def test_lying_and_missing_usage_are_reported_as_sent() -> None:
    lie = Usage(prompt_tokens=1, completion_tokens=10**9)
    engine = await started(ScriptedEngine(Script(chunks=1, usage=lie)))
    response = await engine.open(Endpoint.CHAT, BODY)
    await response.read()
    assert response.usage == lie
    assert response.meter.content_events == 1  # what a relay can hold the lie against

    engine = await started(ScriptedEngine(Script(chunks=1, usage=None)))
    response = await engine.open(Endpoint.CHAT, BODY)
    await response.read()
    assert response.usage is None
    response = await engine.open(Endpoint.CHAT, {**BODY, "stream": False})
    await response.read()
    assert response.usage is None


async def test_failure_after_k_chunks() -> None:
    engine = await started(ScriptedEngine(Script(chunks=10, fail_after=3)))
    response = await engine.open(Endpoint.CHAT, BODY)
    got: list[bytes] = []
    with pytest.raises(EngineUnavailable):
        async for part in response:
            got.append(part)
    assert len(got) == 3
    assert engine.stats.failed == 1 and engine.stats.active == 0


async def test_raw_garbage_fails_the_reader() -> None:
    engine = await started(ScriptedEngine(Script(raw=(b"data: {\n\n",))))
    response = await engine.open(Endpoint.CHAT, BODY)
    with pytest.raises(EngineProtocolError):
        await response.read()


async def test_busy_and_cancel_accounting() -> None:
    engine = await started(ScriptedEngine(Script(chunks=100, delay=0.01), max_active=1))
    first = await engine.open(Endpoint.CHAT, BODY)
    with pytest.raises(EngineBusy):
        await engine.open(Endpoint.CHAT, BODY)
    async with first:
        async for _ in first:
            break
    assert engine.stats.cancelled == 1 and engine.stats.busy_refusals == 1
    assert engine.calls[0].closed.is_set()
    second = await engine.open(Endpoint.CHAT, BODY)
    await second.aclose()


async def test_handler_picks_a_script_per_request() -> None:
    async def handler(endpoint: Endpoint, body: dict[str, Any]) -> Script:
        await asyncio.sleep(0)
        return Script(chunks=int(body["max_tokens"]), chunk_bytes=1)

    engine = await started(ScriptedEngine(handler=handler))
    for n in (1, 4):
        response = await engine.open(Endpoint.CHAT, {**BODY, "max_tokens": n})
        await response.read()
        assert response.meter.content_chars == n
    assert engine.calls[0].body["stream_options"] == {"include_usage": True}


async def test_lifecycle() -> None:
    engine = ScriptedEngine()
    assert not await engine.healthy()
    with pytest.raises(EngineUnavailable):
        await engine.open(Endpoint.CHAT, BODY)
    await engine.start()
    assert await engine.healthy()
    await engine.aclose()
    with pytest.raises(EngineUnavailable):
        await engine.start()
    with pytest.raises(ValueError):
        ScriptedEngine(Script(), handler=lambda e, b: Script())
    with pytest.raises(ValueError):
        Script(chunks=-1)


async def test_closing_from_another_task_stops_the_reader() -> None:
    engine = await started(ScriptedEngine(Script(chunks=1000, delay=0.005)))
    response = await engine.open(Endpoint.CHAT, BODY)
    task = asyncio.create_task(response.read())
    await asyncio.sleep(0.05)
    await response.aclose()
    raw = await asyncio.wait_for(task, timeout=1)
    assert 0 < raw.count(b"data: ") < 1000
    assert engine.stats.cancelled == 1
