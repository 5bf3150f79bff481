"""The app developer's endpoint, driven by the official ``openai`` SDK against a real local network.

One network of scripted engines per module (sockets, RA-TLS with sim attestation, real services);
the SDK's own idioms — ``for chunk in stream: chunk.choices[0].delta`` — must just work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
import pytest_asyncio

from cocoon.client import Client
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.oai.capabilities import Capability

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "scripted-model"
PLAIN = "plain-model"  # a worker that can do chat and completions only
MESSAGES = [{"role": "user", "content": "hi"}]
# The scripted answer: 3 chunks of 128 bytes (long enough for the usage it claims to pass the audit).
TEXT = "0" * 384
T = TypeVar("T")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def network(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalNetwork]:
    engines = [
        ScriptedEngine(Script(chunks=3)),
        ScriptedEngine(
            Script(chunks=3),
            model_name=PLAIN,
            capabilities=frozenset({Capability.CHAT, Capability.COMPLETIONS}),
        ),
    ]
    config = LocalNetworkConfig.ephemeral(tmp_path_factory.mktemp("surface"), workers=2)
    async with LocalNetwork(config, engine_factory=lambda i: engines[i]) as net:
        yield net


def _sdk(network: LocalNetwork) -> openai.OpenAI:
    return openai.OpenAI(base_url=network.base_url, api_key="x", max_retries=0, timeout=30)


async def _in_thread(network: LocalNetwork, use: Callable[[Any], T]) -> T:
    # ``Any``: the SDK's overloads for every model name are not what these tests are about.
    """Run ``use`` with the synchronous SDK (its documented idioms) off the event loop."""

    def run() -> T:
        with _sdk(network) as sdk:
            return use(sdk)

    return await asyncio.to_thread(run)


@pytest.mark.parametrize("include_usage", [None, False])
async def test_chat_stream_without_usage_works_with_the_sdk_loop(
    network: LocalNetwork, include_usage: bool | None
) -> None:
    def use(sdk: Any) -> list[str]:
        extra: dict[str, Any] = (
            {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
        )
        stream = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **extra)
        parts = []
        for chunk in stream:
            assert chunk.usage is None
            parts.append(chunk.choices[0].delta.content or "")
        return parts

    parts = await _in_thread(network, use)
    assert "".join(parts) == TEXT


async def test_chat_stream_with_usage_ends_with_the_usage_chunk_and_its_cost(network: LocalNetwork) -> None:
    def use(sdk: Any) -> list[Any]:
        stream = sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return list(stream)

    chunks = await _in_thread(network, use)
    assert all(c.choices and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert (last.usage.model_extra or {})["cost"] > 0


@pytest.mark.parametrize("include_usage", [False, True])
async def test_legacy_completions_stream_both_ways(network: LocalNetwork, include_usage: bool) -> None:
    def use(sdk: Any) -> list[Any]:
        stream = sdk.completions.create(
            model=MODEL, prompt="say", stream=True, stream_options={"include_usage": include_usage}
        )
        texts = []
        for chunk in stream:
            if chunk.usage is not None:
                texts.append(chunk.usage)
                continue
            texts.append(chunk.choices[0].text)
        return texts

    out = await _in_thread(network, use)
    usage = [x for x in out if not isinstance(x, str)]
    assert len(usage) == (1 if include_usage else 0)
    assert "".join(x for x in out if isinstance(x, str))


async def test_non_streamed_answers_carry_the_cost_in_body_and_header(network: LocalNetwork) -> None:
    def use(sdk: Any) -> tuple[Any, dict[str, str]]:
        raw = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        return raw.parse(), dict(raw.headers)

    reply, headers = await _in_thread(network, use)
    assert int(headers["x-cocoon-cost-nano"]) == (reply.usage.model_extra or {})["cost"] > 0


async def test_responses_api_text_and_stream(network: LocalNetwork) -> None:
    def use(sdk: Any) -> tuple[Any, list[Any]]:
        whole = sdk.responses.create(model=MODEL, input="hi", instructions="be short", store=False)
        events = list(sdk.responses.create(model=MODEL, input="hi", stream=True))
        return whole, events

    whole, events = await _in_thread(network, use)
    assert whole.output_text == TEXT and whole.status == "completed"
    assert whole.usage is not None and whole.usage.output_tokens > 0
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == TEXT
    completed = events[-1].response
    assert completed.usage.input_tokens > 0 and (completed.usage.model_extra or {})["cost"] > 0
    assert completed.output_text == TEXT


async def test_responses_refuse_what_they_cannot_translate(network: LocalNetwork) -> None:
    def use(sdk: Any) -> None:
        sdk.responses.create(model=MODEL, input="hi", previous_response_id="resp_earlier")

    with pytest.raises(openai.BadRequestError) as info:
        await _in_thread(network, use)
    assert info.value.code == "unsupported_parameter" and info.value.param == "previous_response_id"


async def test_models_list_and_retrieve_with_capabilities(network: LocalNetwork) -> None:
    def use(sdk: Any) -> tuple[list[Any], Any]:
        return list(sdk.models.list()), sdk.models.retrieve(MODEL)

    listed, one = await _in_thread(network, use)
    assert {m.id for m in listed} == {MODEL, PLAIN}
    assert one.id == MODEL and one.object == "model"
    capabilities = {m.id: set((m.model_extra or {})["capabilities"]) for m in listed}
    assert {"chat", "tools", "embeddings"} <= capabilities[MODEL]
    assert capabilities[PLAIN] == {"chat", "completions"}

    def missing(sdk: Any) -> None:
        sdk.models.retrieve("no-such-model")

    with pytest.raises(openai.NotFoundError) as info:
        await _in_thread(network, missing)
    assert info.value.code == "model_not_found"


async def test_embeddings(network: LocalNetwork) -> None:
    def use(sdk: Any) -> Any:
        return sdk.embeddings.create(model=MODEL, input=["a", "b"])

    reply = await _in_thread(network, use)
    assert len(reply.data) == 2 and reply.usage.prompt_tokens > 0
    assert (reply.usage.model_extra or {})["cost"] > 0


async def test_unknown_model_is_404_model_not_found(network: LocalNetwork) -> None:
    def use(sdk: Any) -> None:
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)

    with pytest.raises(openai.NotFoundError) as info:
        await _in_thread(network, use)
    assert info.value.code == "model_not_found" and info.value.param == "model"


async def test_parameters_pass_through_or_are_refused_by_name(network: LocalNetwork) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    extra = {
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "top_logprobs": 2,
    }
    engine = network.workers[0].engine
    assert isinstance(engine, ScriptedEngine)

    def use(sdk: Any) -> None:
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True, **extra)

    await _in_thread(network, use)
    seen = engine.calls[-1].body
    assert {k: seen[k] for k in extra} == extra and seen["logprobs"] is True

    def plain(sdk: Any) -> None:
        sdk.chat.completions.create(model=PLAIN, messages=MESSAGES, tools=tools)

    with pytest.raises(openai.BadRequestError) as info:
        await _in_thread(network, plain)
    assert info.value.param == "tools"


async def test_browser_and_rebinding_requests_are_refused_before_any_work(network: LocalNetwork) -> None:
    assert network.client is not None
    url = f"http://127.0.0.1:{network.client.http_port}"
    before = network.client.counters["requests"]
    body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
    async with httpx.AsyncClient() as http:
        form = await http.post(
            f"{url}/v1/chat/completions", content=body, headers={"content-type": "text/plain"}
        )
        page = await http.post(
            f"{url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", "origin": "https://evil.example"},
        )
        rebound = await http.get(f"{url}/v1/models", headers={"host": "evil.example"})
        money = await http.post(f"{url}/cocoon/close", headers={"content-type": "application/json"})
        unknown = await http.get(f"{url}/v1/nope")
        big = await http.post(
            f"{url}/v1/chat/completions",
            content=b" " * (9 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
    assert (form.status_code, form.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (page.status_code, page.json()["error"]["code"]) == (403, "forbidden_origin")
    assert (rebound.status_code, rebound.json()["error"]["code"]) == (403, "forbidden_host")
    assert (money.status_code, money.json()["error"]["code"]) == (401, "admin_token_required")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_url")
    assert (big.status_code, big.json()["error"]["code"]) == (413, "request_too_large")
    assert network.client.counters["requests"] == before


async def test_attestation_binds_the_nonce(network: LocalNetwork) -> None:
    assert network.client is not None
    async with httpx.AsyncClient() as http:
        report = (await http.get(f"{network.base_url}/attestation", params={"nonce": "n-0123456789"})).json()
        bad = await http.get(f"{network.base_url}/attestation", params={"nonce": "<script>"})
    assert report["nonce"] == "n-0123456789"
    assert report["proxy"]["verified"]["backend"] == "sim"
    assert report["proxy"]["nonce_bound"] is True, report["proxy"]["nonce_problem"]
    workers = report["proxy_report"]["workers"]
    assert len(workers) == 2 and all(w["nonce_bound"] for w in workers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "nonce"


async def test_budget_is_reserved_per_request_and_survives_a_client_restart(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=3))
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1, daily_budget_nano=10**15)
    async with LocalNetwork(config, engine_factory=lambda i: engine) as net:
        assert net.client is not None
        await _in_thread(
            net, lambda api: api.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
        )
        assert net.client.spending.budget is not None
        await net.client.spending.budget.flush()  # the settlement is queued on the store's writer
        left = net.client.budget_left()
        assert left is not None and 0 < 10**15 - left == net.client.counters["spent_nano"]
        await net.client.stop()
        again = Client(net.client.config.model_copy(update={"http_port": 0}))
        await again.start()
        try:
            assert again.budget_left() == left  # spent today is on disk, not in memory
        finally:
            await again.stop()


async def test_a_model_served_before_but_not_now_is_503_model_unavailable(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=3))
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: engine) as net:
        assert net.proxy is not None
        await net.workers[0].stop()
        async with asyncio.timeout(10):
            while net.proxy.registry.records():  # noqa: ASYNC110 - the registry offers no event
                await asyncio.sleep(0.02)

        def ask(model: str) -> Callable[[Any], Any]:
            return lambda sdk: sdk.chat.completions.create(model=model, messages=MESSAGES)

        with pytest.raises(openai.InternalServerError) as gone:
            await _in_thread(net, ask(MODEL))
        assert (gone.value.status_code, gone.value.code) == (503, "model_unavailable")
        with pytest.raises(openai.NotFoundError) as unknown:
            await _in_thread(net, ask("never-served"))
        assert (unknown.value.status_code, unknown.value.code) == (404, "model_not_found")


@pytest.mark.parametrize("responses_api", [False, True])
async def test_langchain_chat_model_invokes_and_streams(network: LocalNetwork, responses_api: bool) -> None:
    from langchain_openai import ChatOpenAI

    def use(_: Any) -> tuple[Any, list[Any]]:
        llm = ChatOpenAI(
            model=MODEL,
            base_url=network.base_url,
            api_key="x",  # type: ignore[arg-type]
            max_retries=0,
            use_responses_api=responses_api,
        )
        return llm.invoke("hi"), list(llm.stream("hi"))

    reply, chunks = await _in_thread(network, use)
    assert reply.text == TEXT
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    assert "".join(chunk.text for chunk in chunks) == TEXT
