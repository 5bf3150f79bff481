"""The OpenAI request models: validate what can be checked, keep (forward) everything else."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cocoon.oai.requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def test_chat_request_accepts_openai_fields_and_keeps_unknown_ones() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": MESSAGES, "temperature": 0.2, "logit_bias": {"1": 2}}
    )
    assert req.token_limit() == 1000
    assert req.model_extra == {"logit_bias": {"1": 2}}


def test_tools_response_format_logprobs_and_image_parts_are_kept_for_the_worker() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
            }
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
    }
    req = ChatCompletionRequest.model_validate(body)
    dumped = req.model_dump(exclude_unset=True)
    for key in ("tools", "tool_choice", "response_format", "logprobs", "top_logprobs"):
        assert dumped[key] == body[key]
    assert dumped["messages"][0]["content"] == body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": MESSAGES, "n": 2}, "n"),
        ({"model": "m", "messages": MESSAGES, "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_chat_request_rejects_bad_fields(body: dict[str, object], param: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    assert info.value.errors()[0]["loc"][0] == param


def test_completion_limits_and_stream_options_rule() -> None:
    assert CompletionRequest.model_validate({"model": "m", "prompt": "x", "max_tokens": 7}).token_limit() == 7
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate(
            {"model": "m", "prompt": "x", "stream_options": {"include_usage": True}}
        )


@pytest.mark.parametrize(
    ("options", "wanted"),
    [(None, False), ({"include_usage": False}, False), ({"include_usage": True}, True)],
)
def test_wants_usage_only_when_asked(options: dict[str, bool] | None, wanted: bool) -> None:
    body: dict[str, object] = {"model": "m", "messages": MESSAGES, "stream": True}
    if options is not None:
        body["stream_options"] = options
    assert ChatCompletionRequest.model_validate(body).wants_usage is wanted


def test_embedding_request() -> None:
    req = EmbeddingRequest.model_validate({"model": "e", "input": ["a", "b"], "encoding_format": "float"})
    assert not req.stream and req.token_limit() == 1
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", "input": []})
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", "input": "x", "encoding_format": "hex"})
