"""End to end with the official ``openai`` package as the app and the real embedded model."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from cocoon.localnet.network import LocalNetwork

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _oai(network: LocalNetwork) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=network.base_url, api_key="local", max_retries=0, timeout=60)


async def _model(network: LocalNetwork) -> str:
    async with _oai(network) as oai:
        models = await oai.models.list()
    return models.data[0].id


async def test_models_lists_the_served_model_with_prices(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        models = await oai.models.list()
    assert len(models.data) == 1
    entry = models.data[0]
    assert entry.id == model_network.workers[0].engine.model_name
    extra = entry.model_extra or {}
    assert extra["workers"] == 1
    assert extra["price_per_1m_nano"]["completion"] > 0


async def test_chat_non_streaming_has_content_usage_and_cost(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    async with _oai(model_network) as oai:
        answer = await oai.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12
        )
    completion = answer.parse()
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    cost = (usage.model_extra or {})["cost"]
    assert cost > 0
    # The worker signed the exact bytes we got; the proxy signed the price.
    assert (usage.model_extra or {})["cocoon"]["receipt_verified"] is True
    assert int(answer.headers["x-cocoon-cost-nano"]) == cost


async def test_chat_streaming_ends_with_usage_and_done(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    async with _oai(model_network) as oai:
        stream = await oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
    assert "".join(text)
    assert usage is not None and 0 < usage.completion_tokens <= 16
    # Streams are metered exactly (the reference bills them as 0 tokens).
    assert (usage.model_extra or {})["cost"] > 0


async def test_completions_endpoint(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    async with _oai(model_network) as oai:
        completion = await oai.completions.create(model=model, prompt="The sky is", max_tokens=8)
    assert completion.choices[0].text is not None
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_concurrent_requests_all_answered(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    async with _oai(model_network) as oai:

        async def one(i: int) -> int:
            reply = await oai.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"Say {i}."}], max_tokens=6
            )
            assert reply.usage is not None
            return reply.usage.completion_tokens

        tokens = await asyncio.gather(*(one(i) for i in range(5)))
    assert all(t > 0 for t in tokens)


async def test_unknown_model_is_openai_404(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        with pytest.raises(openai.NotFoundError) as info:
            await oai.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
    assert info.value.status_code == 404
    assert info.value.body is not None


async def test_malformed_json_is_400_in_openai_shape(model_network: LocalNetwork) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"{model_network.base_url}/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


async def test_invalid_field_names_the_parameter(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"{model_network.base_url}/chat/completions",
            content=json.dumps({"model": model, "messages": [], "temperature": 9}).encode(),
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] in {"messages", "temperature"}


async def test_curl_style_stream_is_sse_with_done(model_network: LocalNetwork) -> None:
    model = await _model(model_network)
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True}
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{model_network.base_url}/chat/completions", json=body) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([part async for part in reply.aiter_bytes()])
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]"
    # As OpenAI: no usage chunk unless stream_options.include_usage asks; the cost is in a comment.
    assert not [e for e in events if b'"usage":{' in e]
    comment = next(e for e in events if e.startswith(b": cocoon "))
    assert json.loads(comment[len(b": cocoon ") :])["cost_nano"] > 0
