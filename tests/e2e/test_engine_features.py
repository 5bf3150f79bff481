"""Tools, structured output, logprobs, embeddings and refusals end to end: the official ``openai``
package and LangChain's ``ChatOpenAI`` against a local network serving the real SmolLM2 model.

Answers are kept short (2 CPU cores); grammars make the shapes certain, the words are not asserted.
"""

from __future__ import annotations

import json
import math
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, Field

from cocoon.localnet.network import LocalNetwork

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "SmolLM2-135M-Instruct"
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def _oai(network: LocalNetwork) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=network.base_url, api_key="local", max_retries=0, timeout=120)


def _chat(network: LocalNetwork, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL, base_url=network.base_url, api_key="local", max_retries=0, temperature=0, **kwargs
    )


async def test_models_list_each_models_capabilities(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        (entry,) = (await oai.models.list()).data
    capabilities = set((entry.model_extra or {})["capabilities"])
    assert {
        "chat",
        "completions",
        "embeddings",
        "tools",
        "json_object",
        "json_schema",
        "logprobs",
    } <= capabilities
    assert "vision" not in capabilities


async def test_tool_round_trip_with_the_sdk(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        first = await oai.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=40
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather"
        city = json.loads(call.function.arguments)["city"]
        history: list[ChatCompletionMessageParam] = [
            *ASK,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": f"sunny, 21 C in {city}"},
        ]
        second = await oai.chat.completions.create(
            model=MODEL, messages=history, tools=[WEATHER], max_tokens=8
        )
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls
    assert first.usage is not None and first.usage.completion_tokens > 0


async def test_streamed_tool_call_accumulates_in_the_sdk(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        stream = await oai.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function is not None and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments or "")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_json_object_and_json_schema_answers_parse(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        plain = await oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": 'Reply with a JSON object like {"colour": "red"}.'}],
            response_format={"type": "json_object"},
            max_tokens=60,
            temperature=0,
        )
        parsed = await oai.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Invent a person."}],
            response_format=Person,
            max_tokens=40,
            seed=1,
        )
    assert isinstance(json.loads(plain.choices[0].message.content or ""), dict)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and len(person.name) <= 12 and 0 <= person.age <= 120


async def test_logprobs_reach_the_sdk(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        answer = await oai.chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, top_logprobs=2, max_tokens=4
        )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == answer.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in logprobs.content)


async def test_embeddings_with_the_sdk_and_langchain(model_network: LocalNetwork) -> None:
    async with _oai(model_network) as oai:
        result = await oai.embeddings.create(model=MODEL, input=["a red apple", "a green pear"])  # base64
    first, second = (item.embedding for item in result.data)
    assert len(first) == len(second) == 576
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-3)
    assert result.usage.prompt_tokens > 0


async def test_image_parts_are_refused_by_name(model_network: LocalNetwork) -> None:
    question: ChatCompletionMessageParam = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    async with _oai(model_network) as oai:
        with pytest.raises(openai.BadRequestError) as info:
            await oai.chat.completions.create(model=MODEL, messages=[question], max_tokens=4)
    assert "messages[0].content[1].image_url" in str(info.value)


async def test_langchain_invoke_stream_and_batch(model_network: LocalNetwork) -> None:
    chat = _chat(model_network, max_tokens=6)
    answer = await chat.ainvoke("Name a colour.")
    assert isinstance(answer, AIMessage) and answer.content
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    pieces = [chunk async for chunk in chat.astream("Count to three.")]
    assert "".join(str(p.content) for p in pieces)
    batch = await chat.abatch(["Say hi.", "Say bye."])
    assert len(batch) == 2 and all(isinstance(m, AIMessage) and m.content for m in batch)


async def test_langchain_bind_tools_round_trip(model_network: LocalNetwork) -> None:
    chat = _chat(model_network, max_tokens=40)
    bound = chat.bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage("What is the weather in Paris?")
    called = await bound.ainvoke([question])
    assert isinstance(called, AIMessage) and len(called.tool_calls) == 1
    call = called.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    result = ToolMessage(content=get_weather.invoke(call["args"]), tool_call_id=call["id"] or "")
    final = (
        await _chat(model_network, max_tokens=8).bind_tools([get_weather]).ainvoke([question, called, result])
    )
    assert isinstance(final, AIMessage) and final.content


async def test_langchain_with_structured_output(model_network: LocalNetwork) -> None:
    structured = _chat(model_network, max_tokens=40).with_structured_output(Person)
    person = await structured.ainvoke("Invent a person.")
    assert isinstance(person, Person) and 0 <= person.age <= 120
