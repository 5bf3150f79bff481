"""The Responses API over chat completions: request translation, answer and stream translation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cocoon.oai import ApiError, ErrorKind, SseDecoder, Usage
from cocoon.oai.responses import ResponsesContext, ResponsesStream, chat_to_response, responses_to_chat


def _translate(body: dict[str, Any]) -> tuple[dict[str, Any], ResponsesContext]:
    return responses_to_chat(body, response_id="resp_abc", created_at=1700000000)


def test_text_input_instructions_and_limits_become_a_chat_body() -> None:
    chat, ctx = _translate(
        {"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 5, "temperature": 0.1}
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.1,
        "max_tokens": 5,
    }
    assert ctx.model == "m" and ctx.echo["instructions"] == "be brief"


def test_message_items_parts_tools_and_formats_are_translated() -> None:
    chat, _ = _translate(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "data:x"},
                    ],
                },
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        }
    )
    assert chat["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:x", "detail": "auto"},
    }
    assert chat["messages"][1] == {"role": "assistant", "content": "ok"}
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"]["json_schema"]["name"] == "s"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_x"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0]"),
    ],
)
def test_what_cannot_be_translated_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        _translate({"model": "m", "input": "hi", **extra})
    assert info.value.kind is ErrorKind.UNSUPPORTED_PARAMETER and info.value.param == param


def test_invalid_input_is_invalid_request() -> None:
    with pytest.raises(ApiError) as info:
        _translate({"model": "m", "input": []})
    assert info.value.kind is ErrorKind.INVALID_REQUEST and info.value.param == "input"


def test_chat_answer_becomes_a_response_object() -> None:
    _, ctx = _translate({"model": "m", "input": "hi"})
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chat: dict[str, Any] = {
        "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": usage,
    }
    response = chat_to_response(chat, ctx, extra_usage={"cost": 7})
    assert response["status"] == "completed" and response["id"] == "resp_abc"
    assert response["output"][0]["content"][0]["text"] == "hello"
    assert response["usage"]["input_tokens"] == 3 and response["usage"]["cost"] == 7
    cut = chat_to_response(
        {**chat, "choices": [{**chat["choices"][0], "finish_reason": "length"}]}, ctx, extra_usage={}
    )
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in SseDecoder().feed(raw)]


def test_stream_events_in_order_with_usage_and_numbering() -> None:
    _, ctx = _translate({"model": "m", "input": "hi"})
    stream = ResponsesStream(ctx)
    raw = stream.opening()
    raw += stream.feed({"choices": [{"delta": {"role": "assistant"}}]})
    raw += stream.feed({"choices": [{"delta": {"content": "he"}}]})
    raw += stream.feed({"choices": [{"delta": {"content": "llo"}, "finish_reason": "stop"}]})
    raw += stream.feed({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    raw += stream.finish(usage=Usage(1, 2), extra_usage={"cost": 3})
    events = _events(raw)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "hello"
    done = events[-1]["response"]
    assert done["usage"]["output_tokens"] == 2 and done["usage"]["cost"] == 3
    assert done["output"][0]["content"][0]["text"] == "hello"


def test_stream_function_calls_and_failure() -> None:
    _, ctx = _translate({"model": "m", "input": "hi"})
    stream = ResponsesStream(ctx)
    stream.feed(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}
                        ]
                    }
                }
            ]
        }
    )
    stream.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]})
    events = _events(stream.finish(usage=Usage(1, 1)))
    call = events[-1]["response"]["output"][0]
    assert call["type"] == "function_call" and call["name"] == "f" and call["arguments"] == '{"a":1}'
    failed = _events(ResponsesStream(ctx).fail(ErrorKind.UPSTREAM_FAILED, "worker died"))[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": "upstream_failed", "message": "worker died"}
