"""Tools, structured output, logprobs and embeddings with the real SmolLM2 model. Grammars make
the shapes certain (a call parses, a schema validates); the words are never asserted."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

from pydantic import BaseModel, Field

from cocoon.inference import EmbeddedEngine, Endpoint

from .conftest import SESSION_LOOP
from .test_embedded import sse_events

pytestmark = SESSION_LOOP

WEATHER = {
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
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


async def _json(engine: EmbeddedEngine, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    response = await engine.open(endpoint, body)
    return response.status, json.loads(await response.read())


async def test_required_tool_call_comes_back_in_openai_shape(embedded: EmbeddedEngine) -> None:
    status, body = await _json(
        embedded,
        Endpoint.CHAT,
        {"messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 40},
    )
    assert status == 200
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    assert body["usage"]["completion_tokens"] > 0


async def test_streamed_tool_call_is_one_delta_then_finish(embedded: EmbeddedEngine) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    response = await embedded.open(
        Endpoint.CHAT,
        {"messages": ASK, "tools": [WEATHER], "tool_choice": named, "max_tokens": 40, "stream": True},
    )
    events = sse_events(await response.read())
    deltas = [e["choices"][0] for e in events if e["choices"]]
    assert deltas[0]["delta"] == {"role": "assistant", "content": ""}
    calls = [d["delta"]["tool_calls"] for d in deltas if "tool_calls" in d["delta"]]
    assert len(calls) == 1 and calls[0][0]["index"] == 0
    assert calls[0][0]["function"]["name"] == "get_weather"
    json.loads(calls[0][0]["function"]["arguments"])
    assert not any(d["delta"].get("content") for d in deltas)  # the call never leaks as text
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert events[-1]["usage"]["completion_tokens"] > 0


async def test_a_tool_result_is_answered_in_text(embedded: EmbeddedEngine) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    status, body = await _json(
        embedded,
        Endpoint.CHAT,
        {"messages": messages, "tools": [WEATHER], "tool_choice": "none", "max_tokens": 8},
    )
    assert status == 200 and isinstance(body["choices"][0]["message"]["content"], str)
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


async def test_json_schema_answer_parses_and_validates(embedded: EmbeddedEngine) -> None:
    schema = {"name": "person", "schema": Person.model_json_schema(), "strict": True}
    for seed in (1, 2):
        status, body = await _json(
            embedded,
            Endpoint.CHAT,
            {
                "messages": [{"role": "user", "content": "Invent a person."}],
                "response_format": {"type": "json_schema", "json_schema": schema},
                "max_tokens": 40,
                "seed": seed,
            },
        )
        assert status == 200
        choice = body["choices"][0]
        assert choice["finish_reason"] == "stop"  # the grammar bounds the answer, then ends it
        Person.model_validate_json(choice["message"]["content"])


async def test_json_object_answer_is_a_json_object(embedded: EmbeddedEngine) -> None:
    status, body = await _json(
        embedded,
        Endpoint.CHAT,
        {
            "messages": [{"role": "user", "content": 'Reply with a JSON object like {"colour": "red"}.'}],
            "response_format": {"type": "json_object"},
            "max_tokens": 60,
            "temperature": 0,
        },
    )
    choice = body["choices"][0]
    assert status == 200 and choice["finish_reason"] == "stop"
    assert isinstance(json.loads(choice["message"]["content"]), dict)


async def test_chat_logprobs_have_tokens_bytes_and_alternatives(embedded: EmbeddedEngine) -> None:
    status, body = await _json(
        embedded, Endpoint.CHAT, {"messages": ASK, "logprobs": True, "top_logprobs": 3, "max_tokens": 4}
    )
    assert status == 200
    choice = body["choices"][0]
    entries = choice["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"] - (choice["finish_reason"] == "stop")
    assert "".join(e["token"] for e in entries) == choice["message"]["content"]
    for entry in entries:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
        alternatives = [alt["logprob"] for alt in entry["top_logprobs"]]
        assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
        assert entry["logprob"] <= alternatives[0] + 1e-9


async def test_completion_logprobs_are_parallel_arrays(embedded: EmbeddedEngine) -> None:
    status, body = await _json(
        embedded, Endpoint.COMPLETIONS, {"prompt": "Once upon", "logprobs": 2, "max_tokens": 3}
    )
    assert status == 200
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == 3
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert logprobs["text_offset"][0] == 0 and all(len(top) == 2 for top in logprobs["top_logprobs"])


async def test_embeddings_are_unit_vectors_in_both_encodings(embedded: EmbeddedEngine) -> None:
    status, body = await _json(embedded, Endpoint.EMBEDDINGS, {"input": ["a red apple", "the stock market"]})
    assert status == 200 and body["object"] == "list"
    first, second = (item["embedding"] for item in body["data"])
    assert len(first) == len(second) == 576  # SmolLM2-135M's hidden size
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    status, packed = await _json(
        embedded, Endpoint.EMBEDDINGS, {"input": "a red apple", "encoding_format": "base64"}
    )
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(decoded, first, strict=True))


async def test_embedding_requests_are_validated(embedded: EmbeddedEngine) -> None:
    for body, param in (
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "dimensions": 8}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "word " * 600}, "input"),
    ):
        status, answer = await _json(embedded, Endpoint.EMBEDDINGS, body)
        assert status == 400 and answer["error"]["param"] == param, body


async def test_unsupported_parts_are_400_before_any_work(embedded: EmbeddedEngine) -> None:
    before = embedded.statistics().requests
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    status, body = await _json(
        embedded,
        Endpoint.CHAT,
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}]},
    )
    assert status == 400
    assert body["error"]["param"] == "messages[0].content[1].image_url"
    assert body["error"]["code"] == "unsupported_parameter"
    assert embedded.statistics().requests == before
