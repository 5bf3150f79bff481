"""build_engine_app over real loopback HTTP with scripted engines: errors before the first byte,
in-band errors after it, health, models, disconnects."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from openai import AsyncOpenAI

from cocoon.inference import (
    REFERENCE_USAGE,
    EngineBusy,
    EngineError,
    EngineUnavailable,
    Script,
    ScriptedEngine,
    UsageMeter,
    build_engine_app,
    map_httpx_errors,
    running_server,
)

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "x"}]}


async def test_models_and_health() -> None:
    fake = ScriptedEngine()
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        models = (await http.get("/v1/models")).json()
        assert models["data"][0]["id"] == "scripted-model"
        assert (await http.get("/health")).status_code == 200
        fake.set_healthy(False)
        assert (await http.get("/health")).status_code == 503


@pytest.mark.parametrize(
    ("content", "status", "type_"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (b"[1, 2]", 400, "invalid_request_error"),
        (json.dumps({**CHAT, "model": "other"}).encode(), 404, "NotFoundError"),
    ],
)
async def test_bad_requests_get_openai_errors(content: bytes, status: int, type_: str) -> None:
    fake = ScriptedEngine()
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/chat/completions", content=content)
        assert response.status_code == status
        assert response.json()["error"]["type"] == type_
        assert fake.calls == []  # refused before the engine was asked


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [(EngineBusy("full"), 503, "server_busy"), (EngineUnavailable("down"), 503, "service_unavailable")],
)
async def test_engine_refusals_become_statuses(error: EngineError, status: int, type_: str) -> None:
    fake = ScriptedEngine(Script(open_error=lambda: error))
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == status
        assert response.json()["error"]["type"] == type_
        if type_ == "server_busy":
            assert response.headers["retry-after"] == "1"


async def test_scripted_error_status_is_relayed() -> None:
    fake = ScriptedEngine(Script(status=429, error={"error": {"message": "slow down", "code": 429}}))
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/completions", json={"model": "scripted-model", "prompt": "x"})
        assert response.status_code == 429
        assert response.json()["error"]["message"] == "slow down"


async def test_openai_client_reads_scripted_answers() -> None:
    lie = REFERENCE_USAGE.__class__(prompt_tokens=1, completion_tokens=1_000_000)
    fake = ScriptedEngine(Script(chunks=5, chunk_bytes=16, usage=lie))
    async with running_server(build_engine_app(fake)) as url:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="scripted-model", messages=[{"role": "user", "content": "x"}], stream=True
            )
            chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "0" * 80
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1_000_000
            whole = await client.chat.completions.create(
                model="scripted-model", messages=[{"role": "user", "content": "x"}]
            )
            assert whole.choices[0].message.content == "0" * 80


async def test_client_disconnect_cancels_the_engine_stream() -> None:
    fake = ScriptedEngine(Script(chunks=1000, delay=0.01))
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            meter = UsageMeter()
            async for part in response.aiter_bytes():
                meter.feed(part)
                if meter.data_events >= 3:
                    break
        await asyncio.wait_for(fake.calls[-1].closed.wait(), timeout=2)
        assert fake.stats.cancelled == 1 and fake.stats.active == 0


async def test_client_disconnect_cancels_a_non_streamed_request() -> None:
    fake = ScriptedEngine(Script(chunks=1000, delay=0.01))
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=CHAT, timeout=httpx.Timeout(5, read=0.3))
        await asyncio.wait_for(fake.calls[-1].closed.wait(), timeout=2)
        assert fake.stats.cancelled == 1


def test_every_httpx_error_is_mapped() -> None:
    def subclasses(cls: type[Exception]) -> set[type[Exception]]:
        out = {cls}
        for sub in cls.__subclasses__():
            out |= subclasses(sub)
        return out

    def make(cls: type[Exception]) -> Exception:
        if issubclass(cls, httpx.HTTPStatusError):
            request = httpx.Request("GET", "http://upstream")
            return cls("boom", request=request, response=httpx.Response(500, request=request))
        try:
            return cls("boom")
        except TypeError:
            return cls()  # StreamConsumed and friends take no message

    errors = subclasses(httpx.HTTPError) | subclasses(httpx.InvalidURL) | subclasses(httpx.StreamError)
    assert len(errors) > 15
    for cls in errors:
        exc = make(cls)
        with pytest.raises(EngineError) as info, map_httpx_errors("test"):
            raise exc
        assert info.value.__cause__ is exc, cls


async def test_app_starts_the_engine_even_without_lifespan_events() -> None:
    fake = ScriptedEngine(Script(chunks=1))
    transport = httpx.ASGITransport(app=build_engine_app(fake))  # sends no lifespan events
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as http:
        response = await http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200
        assert response.json()["usage"]["prompt_tokens"] == REFERENCE_USAGE.prompt_tokens
    assert await fake.healthy()


async def test_engine_that_cannot_start_gives_503() -> None:
    fake = ScriptedEngine()
    await fake.aclose()  # a closed engine refuses to start
    transport = httpx.ASGITransport(app=build_engine_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as http:
        assert (await http.get("/v1/models")).status_code == 503
        response = await http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "service_unavailable"


async def test_json_body_failing_midway_aborts_the_connection() -> None:
    fake = ScriptedEngine(Script(chunks=3, fail_after=2))
    async with running_server(build_engine_app(fake)) as url, httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/chat/completions", json=CHAT)


def test_pool_exhaustion_is_busy() -> None:
    from cocoon.inference import EngineBusy

    with pytest.raises(EngineBusy), map_httpx_errors("test"):
        raise httpx.PoolTimeout("all connections busy")
