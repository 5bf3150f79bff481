"""HttpEngine against real loopback servers: the embedded engine served over HTTP, and scripted
fake upstreams (garbage, stalls, errors)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI

from cocoon.inference import (
    REFERENCE_USAGE,
    Capability,
    EmbeddedEngine,
    Endpoint,
    EngineProtocolError,
    EngineTimeout,
    EngineTimeouts,
    EngineUnavailable,
    HttpEngine,
    Script,
    ScriptedEngine,
    build_engine_app,
    fake_upstream,
    running_server,
    serve_openai,
)

from .conftest import SESSION_LOOP

pytestmark = SESSION_LOOP

CHAT = {"model": "anything", "messages": [{"role": "user", "content": "Say hi."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_discovers_model_and_relays_a_stream_with_usage(embedded_url: str) -> None:
    async with HttpEngine(embedded_url + "/v1") as engine:
        assert engine.model_name == "SmolLM2-135M-Instruct"
        assert await engine.healthy()
        # No stream_options in the request: the engine forces include_usage, so usage arrives.
        response = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True, "max_tokens": 5})
        async with response:
            assert response.status == 200
            assert response.header(
                "content-type",
            ).startswith("text/event-stream")  # type: ignore[union-attr]
            raw = b"".join([part async for part in response])
        assert raw.endswith(b"data: [DONE]\n\n")
        assert response.usage is not None
        assert 1 <= response.usage.completion_tokens <= 5
        assert response.usage.prompt_tokens > 10


async def test_non_stream_json(embedded_url: str) -> None:
    async with HttpEngine(embedded_url, model_name="SmolLM2-135M-Instruct") as engine:
        response = await engine.open(Endpoint.COMPLETIONS, {"model": "x", "prompt": "Hello", "max_tokens": 3})
        body = json.loads(await response.read())
        assert body["model"] == "SmolLM2-135M-Instruct"
        assert (
            response.usage is not None
            and response.usage.completion_tokens == body["usage"]["completion_tokens"]
        )


async def test_upstream_400_is_passed_through(embedded_url: str) -> None:
    async with HttpEngine(embedded_url) as engine:
        response = await engine.open(
            Endpoint.COMPLETIONS, {"prompt": "x", "max_tokens": 100000, "stream": True}
        )
        assert response.status == 400
        error = json.loads(await response.read())["error"]
        assert error["param"] == "max_tokens"
        assert response.usage is None
        assert engine.statistics().upstream_error_statuses == 1


async def test_upstream_404_for_a_model_it_does_not_serve(embedded_url: str) -> None:
    async with HttpEngine(embedded_url, rewrite_model=False) as engine:
        response = await engine.open(Endpoint.CHAT, {**CHAT, "model": "gpt-9"})
        assert response.status == 404
        assert "gpt-9" in json.loads(await response.read())["error"]["message"]


async def test_explicit_model_that_upstream_lacks_is_refused(embedded_url: str) -> None:
    engine = HttpEngine(embedded_url, model_name="llama-70b")
    with pytest.raises(EngineUnavailable, match="does not serve"):
        await engine.start()
    await engine.aclose()


async def test_upstream_down() -> None:
    engine = HttpEngine(f"http://127.0.0.1:{free_port()}", timeouts=EngineTimeouts(connect=1))
    with pytest.raises(EngineUnavailable) as info:
        await engine.start()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert not await engine.healthy()
    with pytest.raises(EngineUnavailable):  # never started
        await engine.open(Endpoint.CHAT, CHAT)
    await engine.aclose()
    await engine.aclose()  # idempotent


async def test_closing_the_relay_cancels_generation_upstream(
    embedded: EmbeddedEngine, embedded_url: str
) -> None:
    await embedded.wait_idle()
    before = embedded.statistics().cancelled
    async with HttpEngine(embedded_url) as engine:
        response = await engine.open(
            Endpoint.COMPLETIONS, {"prompt": "Story:", "max_tokens": 900, "stream": True, "ignore_eos": True}
        )
        chunks = 0
        async for _ in response:
            chunks += 1
            if chunks == 3:
                break
        await response.aclose()
    await asyncio.wait_for(embedded.wait_idle(), timeout=3)
    assert embedded.statistics().cancelled == before + 1


async def test_openai_client_against_the_served_engine(embedded_url: str) -> None:
    client = AsyncOpenAI(base_url=embedded_url + "/v1", api_key="unused", max_retries=0)
    async with client:
        completion = await client.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert completion.usage is not None and completion.usage.completion_tokens <= 4
        stream = await client.completions.create(
            model="SmolLM2-135M-Instruct",
            prompt="A",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 3


# -- scripted upstreams ---------------------------------------------------------------------------


async def test_reference_benchmark_stream_through_http() -> None:
    async with fake_upstream(Script(chunks=50, chunk_bytes=128)) as (url, fake), HttpEngine(url) as engine:
        assert engine.model_name == "scripted-model"
        response = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        await response.read()
        assert response.usage == REFERENCE_USAGE
        stats = response.meter.statistics()
        assert stats.content_chars == 50 * 128
        # The upstream saw the forced include_usage and the served model name.
        assert fake.calls[-1].body["stream_options"] == {"include_usage": True}
        assert fake.calls[-1].body["model"] == "scripted-model"


def garbage_upstream(parts: list[bytes], media_type: str) -> FastAPI:
    """An upstream that lists a model and answers every request with exactly ``parts``."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": "garbage", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        return StreamingResponse(body(), media_type=media_type)

    return app


async def test_garbage_from_upstream_is_a_protocol_error() -> None:
    upstream = garbage_upstream([b"data: {}\n\n", b"this is not sse\n\n"], "text/event-stream")
    async with running_server(upstream) as url, HttpEngine(url) as engine:
        response = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        with pytest.raises(EngineProtocolError, match="not an SSE line"):
            await response.read()
        assert response.closed


async def test_lying_content_type_is_still_checked() -> None:
    upstream = garbage_upstream(
        [b'{"usage": {"prompt_tokens": 1, "completion_tokens": "many"}}'], "application/json"
    )
    async with running_server(upstream) as url, HttpEngine(url) as engine:
        response = await engine.open(Endpoint.CHAT, CHAT)
        with pytest.raises(EngineProtocolError, match="invalid usage"):
            await response.read()
        # The meter refused the body, the upstream's HTTP was fine: not one of its protocol errors.
        assert engine.statistics().protocol_errors == 0


async def test_stalled_upstream_times_out() -> None:
    fake = ScriptedEngine(Script(chunks=3, delay=1.0))
    timeouts = EngineTimeouts(connect=2, read=0.2)
    async with running_server(build_engine_app(fake)) as url, HttpEngine(url, timeouts=timeouts) as engine:
        response = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        with pytest.raises(EngineTimeout) as info:
            await response.read()
        assert isinstance(info.value.__cause__, TimeoutError)
        stats = engine.statistics()
        assert stats.timeouts == 1 and stats.requests == 1 and stats.in_flight == 0


async def test_upstream_dying_mid_stream_is_an_engine_error() -> None:
    fake = ScriptedEngine(Script(chunks=10, fail_after=4))
    async with running_server(build_engine_app(fake)) as url, HttpEngine(url) as engine:
        response = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        raw = await response.read()
        # The server reported the failure in-band (status 200 was already sent) and ended the stream.
        assert response.meter.statistics().error is not None
        assert raw.endswith(b"data: [DONE]\n\n")
        assert response.usage is None


async def test_client_leaving_a_non_streamed_request_cancels_generation(
    embedded: EmbeddedEngine, embedded_url: str
) -> None:
    await embedded.wait_idle()
    before = embedded.statistics().cancelled
    body = {"prompt": "Story:", "max_tokens": 900, "ignore_eos": True}
    async with httpx.AsyncClient(base_url=embedded_url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.3))
    await asyncio.wait_for(embedded.wait_idle(), timeout=3)
    assert embedded.statistics().cancelled == before + 1


async def test_model_path_is_kept_for_hashing(tmp_path: Path) -> None:
    engine = HttpEngine("http://127.0.0.1:1", model_path=tmp_path)
    assert engine.model_path == tmp_path
    assert HttpEngine("http://127.0.0.1:1").model_path is None
    with pytest.raises(ValueError):
        HttpEngine("127.0.0.1:8000")
    await engine.aclose()


async def test_serve_openai_runs_until_cancelled() -> None:
    port = free_port()
    fake = ScriptedEngine(Script(chunks=1))
    task = asyncio.create_task(serve_openai(fake, "127.0.0.1", port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    response = await http.get("/v1/models")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
            assert response.json()["data"][0]["id"] == "scripted-model"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not await fake.healthy()  # serve_openai closes the engine on the way out


async def test_busy_upstream_is_passed_through_as_503() -> None:
    async with (
        fake_upstream(Script(chunks=100, delay=0.01), max_active=1) as (url, fake),
        HttpEngine(url) as engine,
    ):
        first = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        second = await engine.open(Endpoint.CHAT, {**CHAT, "stream": True})
        assert second.status == 503
        assert json.loads(await second.read())["error"]["type"] == "server_busy"
        assert second.header("retry-after") == "1"
        await first.aclose()
        assert fake.stats.busy_refusals == 1


async def test_concurrent_streams_share_the_embedded_engine(embedded_url: str) -> None:
    async with HttpEngine(embedded_url) as engine:

        async def one(i: int) -> int:
            response = await engine.open(
                Endpoint.COMPLETIONS, {"prompt": f"{i}:", "max_tokens": 3, "stream": True, "ignore_eos": True}
            )
            await response.read()
            assert response.usage is not None
            return response.usage.completion_tokens

        assert await asyncio.gather(*(one(i) for i in range(4))) == [3, 3, 3, 3]


async def test_feature_parameters_pass_through_unchanged_and_embeddings_are_metered() -> None:
    features = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "logprobs": True,
        "top_logprobs": 3,
    }
    async with fake_upstream(Script(chunks=1)) as (url, upstream), HttpEngine(url) as engine:
        assert {
            "tools",
            "json_schema",
            "logprobs",
        } <= engine.capabilities and "vision" not in engine.capabilities
        response = await engine.open(Endpoint.CHAT, {**CHAT, **features})
        await response.read()
        seen = upstream.calls[-1].body
        assert {k: seen[k] for k in features} == features  # relayed as sent, nothing dropped
        embedded = await engine.open(Endpoint.EMBEDDINGS, {"model": "x", "input": ["a", "b"]})
        body = json.loads(await embedded.read())
        assert embedded.status == 200 and len(body["data"]) == 2
        assert upstream.calls[-1].endpoint is Endpoint.EMBEDDINGS
        assert embedded.usage is not None and embedded.usage.prompt_tokens == REFERENCE_USAGE.prompt_tokens


async def test_served_engine_refuses_what_it_lacks_by_name() -> None:
    narrow = ScriptedEngine(Script(chunks=1), capabilities=frozenset({Capability.CHAT}))
    chat = {**CHAT, "model": narrow.model_name}
    async with running_server(build_engine_app(narrow)) as url, httpx.AsyncClient() as http:
        models = (await http.get(f"{url}/v1/models")).json()
        assert models["data"][0]["capabilities"] == ["chat"]
        answer = await http.post(f"{url}/v1/chat/completions", json={**chat, "logprobs": True})
        assert answer.status_code == 400
        assert answer.json()["error"] | {"message": ""} == {
            "message": "",
            "type": "invalid_request_error",
            "code": "unsupported_parameter",
            "param": "logprobs",
        }
        assert (await http.post(f"{url}/v1/embeddings", json={"input": "x"})).status_code == 400
    assert narrow.calls == []
