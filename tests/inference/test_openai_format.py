from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.inference import Endpoint
from cocoon.inference._openai import InvalidRequest, force_include_usage, parse_request


def test_chat_request_is_parsed() -> None:
    req = parse_request(
        Endpoint.CHAT,
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant"},
            ],
            "max_completion_tokens": 5,
            "stop": "x",
            "stream": True,
            "temperature": 0,
            "unknown_field": 1,
        },
    )
    assert req.messages == ({"role": "user", "content": "hi"}, {"role": "assistant", "content": ""})
    assert req.max_tokens == 5 and req.stop == ("x",) and req.stream and req.temperature == 0.0


def test_completion_prompt_forms() -> None:
    assert parse_request(Endpoint.COMPLETIONS, {"prompt": "a"}).prompt == "a"
    assert parse_request(Endpoint.COMPLETIONS, {"prompt": ["a"]}).prompt == "a"
    assert parse_request(Endpoint.COMPLETIONS, {"prompt": [1, 2]}).prompt == (1, 2)
    assert parse_request(Endpoint.COMPLETIONS, {"prompt": [[1, 2]]}).prompt == (1, 2)


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        (Endpoint.CHAT, {"messages": []}, "messages"),
        (Endpoint.CHAT, {"messages": [{"content": "x"}]}, "messages"),
        (Endpoint.CHAT, {"messages": [{"role": "user", "content": 3}]}, "messages"),
        (Endpoint.COMPLETIONS, {"prompt": ["a", "b"]}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": 5}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": [-1]}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "max_tokens": -1}, "max_tokens"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "max_tokens": True}, "max_tokens"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "temperature": 3}, "temperature"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "stop": ["", "x"]}, "stop"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "n": 0}, "n"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "stream": "yes"}, "stream"),
        (Endpoint.COMPLETIONS, {"prompt": "a", "model": 1}, "model"),
    ],
)
def test_invalid_requests_name_the_parameter(endpoint: Endpoint, body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(endpoint, body)
    assert info.value.param == param


def test_force_include_usage_only_when_streaming() -> None:
    body = {"stream": True, "stream_options": {"include_obfuscation": False}}
    out = force_include_usage(body)
    assert out["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert body["stream_options"] == {"include_obfuscation": False}  # the caller's dict is untouched
    assert force_include_usage({"stream": False}) == {"stream": False}
    assert force_include_usage({"stream": True, "stream_options": {"include_usage": False}})[
        "stream_options"
    ] == {"include_usage": True}


def test_endpoint_from_path() -> None:
    assert Endpoint.from_path("/v1/completions") is Endpoint.COMPLETIONS
    assert Endpoint.from_path("/v1/embeddings") is Endpoint.EMBEDDINGS
    with pytest.raises(ValueError, match="unsupported"):
        Endpoint.from_path("/v1/audio/speech")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "n",
        "seed",
        "echo",
        "ignore_eos",
        "presence_penalty",
        "min_p",
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    endpoint=st.sampled_from([Endpoint.CHAT, Endpoint.COMPLETIONS]),
    body=st.dictionaries(FIELDS, JSON, max_size=8),
)
def test_any_json_body_is_parsed_or_refused_cleanly(endpoint: Endpoint, body: dict[str, Any]) -> None:
    try:
        request = parse_request(endpoint, body)
    except InvalidRequest as exc:
        assert str(exc)
        return
    assert request.n >= 1
    assert request.max_tokens is None or request.max_tokens >= 0
