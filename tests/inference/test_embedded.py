"""The embedded engine with the real SmolLM2 model. Text is never asserted exactly (portable and
native llama.cpp builds word answers differently); shapes, counts and stop reasons are."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import pytest
from rich.console import Console

from cocoon.inference import (
    EmbeddedEngine,
    Endpoint,
    EngineBusy,
    EngineResponse,
    EngineUnavailable,
    ModelError,
    UsageMeter,
)

from .conftest import SESSION_LOOP

pytestmark = SESSION_LOOP

CHAT = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "Name a colour."}]}


def sse_events(raw: bytes) -> list[Any]:
    assert raw.endswith(b"data: [DONE]\n\n")
    parts = [p for p in raw.decode().split("\n\n") if p]
    assert all(p.startswith("data: ") for p in parts)
    return [json.loads(p[len("data: ") :]) for p in parts[:-1]]


async def test_chat_non_stream_shape(embedded: EmbeddedEngine) -> None:
    response = await embedded.open(Endpoint.CHAT, {**CHAT, "max_tokens": 8, "temperature": 0})
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    body = json.loads(await response.read())
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == embedded.model_name == "SmolLM2-135M-Instruct"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10  # the chat template adds a system prompt
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert 0 <= usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]
    assert response.usage is not None and response.usage.completion_tokens == usage["completion_tokens"]


async def test_completion_stream_shape_and_usage(embedded: EmbeddedEngine) -> None:
    body = {
        "prompt": "One, two, three,",
        "max_tokens": 6,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    response = await embedded.open(Endpoint.COMPLETIONS, body)
    assert response.status == 200
    assert response.header(
        "content-type",
    ).startswith("text/event-stream")  # type: ignore[union-attr]
    events = sse_events(await response.read())
    *deltas, final, usage_chunk = events
    assert all(e["object"] == "text_completion" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert all(d["choices"][0]["finish_reason"] is None for d in deltas)
    assert final["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert usage_chunk["usage"]["prompt_tokens"] >= 5
    assert response.usage is not None and response.usage.completion_tokens == 6
    assert response.meter.content_events == len([d for d in deltas if d["choices"][0]["text"]])


async def test_chat_stream_starts_with_the_role(embedded: EmbeddedEngine) -> None:
    response = await embedded.open(Endpoint.CHAT, {**CHAT, "max_tokens": 4, "stream": True})
    events = sse_events(await response.read())
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert events[-1]["usage"]["completion_tokens"] <= 4


async def test_streamed_and_whole_answers_agree(embedded: EmbeddedEngine) -> None:
    body = {"prompt": "The sky is", "max_tokens": 8, "temperature": 0}
    whole = json.loads(await (await embedded.open(Endpoint.COMPLETIONS, body)).read())
    streamed = sse_events(await (await embedded.open(Endpoint.COMPLETIONS, {**body, "stream": True})).read())
    text = "".join(e["choices"][0]["text"] for e in streamed if e["choices"])
    assert text == whole["choices"][0]["text"]
    assert streamed[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


async def test_seeded_sampling_is_reproducible(embedded: EmbeddedEngine) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 10, "temperature": 1.0, "seed": 99}
    a = json.loads(await (await embedded.open(Endpoint.COMPLETIONS, body)).read())
    b = json.loads(await (await embedded.open(Endpoint.COMPLETIONS, body)).read())
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


async def test_repeated_prompt_reports_cached_tokens(embedded: EmbeddedEngine) -> None:
    body = {**CHAT, "max_tokens": 1}
    await (await embedded.open(Endpoint.CHAT, body)).read()
    response = await embedded.open(Endpoint.CHAT, body)
    await response.read()
    assert response.usage is not None
    assert response.usage.cached_tokens == response.usage.prompt_tokens - 1


async def test_stop_sequence_and_n(embedded: EmbeddedEngine) -> None:
    body = {"prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 20, "temperature": 0, "stop": [","], "n": 2}
    data = json.loads(await (await embedded.open(Endpoint.COMPLETIONS, body)).read())
    assert [c["index"] for c in data["choices"]] == [0, 1]
    for choice in data["choices"]:
        assert "," not in choice["text"]
        assert choice["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] >= 2


async def test_echo_and_token_prompt(embedded: EmbeddedEngine) -> None:
    data = json.loads(
        await (
            await embedded.open(Endpoint.COMPLETIONS, {"prompt": "Hi there", "echo": True, "max_tokens": 2})
        ).read()
    )
    assert data["choices"][0]["text"].startswith("Hi there")
    data = json.loads(
        await (await embedded.open(Endpoint.COMPLETIONS, {"prompt": [504, 3575], "max_tokens": 2})).read()
    )
    assert data["usage"]["prompt_tokens"] == 2


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        (Endpoint.CHAT, {"messages": "hi"}, "messages"),
        (Endpoint.COMPLETIONS, {"prompt": "x", "max_tokens": 5000}, "max_tokens"),
        (Endpoint.COMPLETIONS, {"prompt": "word " * 1100}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": [10**9]}, "prompt"),
    ],
)
async def test_bad_requests_get_400_before_any_work(
    embedded: EmbeddedEngine, endpoint: Endpoint, body: dict[str, Any], param: str
) -> None:
    before = embedded.statistics().requests
    response = await embedded.open(endpoint, {**body, "stream": True})
    assert response.status == 400
    error = json.loads(await response.read())["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == 400
    assert response.usage is None
    assert embedded.statistics().requests == before


async def test_a_bad_request_is_refused_at_once_while_another_generates(embedded: EmbeddedEngine) -> None:
    # An idle engine prepares on its own thread; a busy one beside it, so the 400 never waits.
    await embedded.wait_idle()
    running = await embedded.open(
        Endpoint.COMPLETIONS,
        {"prompt": "Write a long story:", "max_tokens": 900, "stream": True, "ignore_eos": True},
    )
    try:
        async with asyncio.timeout(5):  # the 900 tokens take 10 s or more
            refused = await embedded.open(Endpoint.COMPLETIONS, {"prompt": "word " * 1100, "stream": True})
        assert refused.status == 400
        assert json.loads(await refused.read())["error"]["param"] == "prompt"
        assert embedded.statistics().running == 1  # only the long one, still generating
    finally:
        await running.aclose()
    await asyncio.wait_for(embedded.wait_idle(), timeout=2)


async def test_cancel_mid_stream_stops_generation_quickly(embedded: EmbeddedEngine) -> None:
    await embedded.wait_idle()
    before = embedded.statistics()
    response = await embedded.open(
        Endpoint.COMPLETIONS,
        {"prompt": "Write a long story:", "max_tokens": 900, "stream": True, "ignore_eos": True},
    )
    received = 0
    async for _ in response:
        received += 1
        if received == 3:
            break
    started = time.perf_counter()
    await response.aclose()
    await asyncio.wait_for(embedded.wait_idle(), timeout=2)
    stopped_after = time.perf_counter() - started
    after = embedded.statistics()
    assert stopped_after < 0.5  # one token takes ~15 ms here; 900 tokens would take ~10 s
    assert after.cancelled == before.cancelled + 1
    assert after.completion_tokens - before.completion_tokens < 200
    assert response.usage is None  # the body was not read to the end


async def test_cancelling_a_non_streamed_request_stops_it(embedded: EmbeddedEngine) -> None:
    await embedded.wait_idle()
    before = embedded.statistics().cancelled
    task = asyncio.create_task(
        embedded.open(Endpoint.COMPLETIONS, {"prompt": "Tell me", "max_tokens": 900, "ignore_eos": True})
    )
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(embedded.wait_idle(), timeout=2)
    assert embedded.statistics().cancelled == before + 1


async def test_requests_are_served_one_at_a_time_in_order(embedded: EmbeddedEngine) -> None:
    bodies = [{"prompt": f"Number {i}:", "max_tokens": 3, "temperature": 0} for i in range(3)]
    responses = await asyncio.gather(*(embedded.open(Endpoint.COMPLETIONS, b) for b in bodies))
    for r in responses:
        assert r.status == 200
        assert json.loads(await r.read())["usage"]["completion_tokens"] <= 3


async def test_busy_refusal_and_recovery() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    async with EmbeddedEngine(n_ctx=512, max_queue=0, n_threads=1, progress=True, console=console) as engine:
        assert "SmolLM2-135M-Instruct loaded" in out.getvalue()
        first = await engine.open(
            Endpoint.COMPLETIONS, {"prompt": "Go:", "max_tokens": 400, "stream": True, "ignore_eos": True}
        )
        with pytest.raises(EngineBusy):
            await engine.open(Endpoint.COMPLETIONS, {"prompt": "Go:", "max_tokens": 1})
        assert engine.statistics().busy_refusals == 1
        await first.aclose()
        await asyncio.wait_for(engine.wait_idle(), timeout=2)
        again = await engine.open(Endpoint.COMPLETIONS, {"prompt": "Go:", "max_tokens": 1})
        assert again.status == 200
    assert not await engine.healthy()
    with pytest.raises(EngineUnavailable):
        await engine.open(Endpoint.COMPLETIONS, {"prompt": "x"})
    with pytest.raises(EngineUnavailable):
        await engine.start()  # a closed engine does not reopen


async def test_not_started_and_missing_model(tmp_path: Any) -> None:
    engine = EmbeddedEngine(tmp_path / "missing.gguf")
    assert engine.model_name == "missing"
    with pytest.raises(EngineUnavailable):
        await engine.open(Endpoint.CHAT, CHAT)
    with pytest.raises(ModelError):
        await engine.start()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelError):
        await EmbeddedEngine(bad).start()


async def test_response_meter_cross_checks_the_relay(embedded: EmbeddedEngine) -> None:
    response = await embedded.open(Endpoint.CHAT, {**CHAT, "max_tokens": 5, "stream": True})
    meter = UsageMeter()
    async with response:
        async for part in response:
            meter.feed(part)
    assert meter.finish() == response.usage


async def test_response_iterates_once(embedded: EmbeddedEngine) -> None:
    response: EngineResponse = await embedded.open(Endpoint.CHAT, {**CHAT, "max_tokens": 1})
    await response.read()
    with pytest.raises(RuntimeError):
        await response.read()


async def test_closing_the_engine_ends_running_requests_cleanly() -> None:
    engine = EmbeddedEngine(n_ctx=512, n_threads=1)
    await engine.start()
    body = {"prompt": "Go:", "max_tokens": 400, "ignore_eos": True}
    streaming = await engine.open(Endpoint.COMPLETIONS, {**body, "stream": True})
    waiting = asyncio.create_task(engine.open(Endpoint.COMPLETIONS, body))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(engine.aclose(), timeout=3)
    raw = await streaming.read()
    assert b"closed during generation" in raw and raw.endswith(b"data: [DONE]\n\n")
    assert streaming.usage is not None and streaming.usage.completion_tokens < 400
    with pytest.raises(EngineUnavailable):
        await waiting
    assert engine.statistics().state == "closed"


async def test_closing_from_another_task_ends_the_reader_quietly(embedded: EmbeddedEngine) -> None:
    await embedded.wait_idle()
    response = await embedded.open(
        Endpoint.COMPLETIONS, {"prompt": "Go:", "max_tokens": 900, "stream": True, "ignore_eos": True}
    )
    first = asyncio.Event()

    async def reader() -> bytes:
        parts = []
        async for part in response:
            parts.append(part)
            first.set()
        return b"".join(parts)

    task = asyncio.create_task(reader())
    await first.wait()
    await response.aclose()
    raw = await asyncio.wait_for(task, timeout=2)
    assert raw.endswith(b"data: [DONE]\n\n") and b'"error"' not in raw
    await asyncio.wait_for(embedded.wait_idle(), timeout=2)
