"""Client pieces without a network: request validation, cost rewriting, error shapes, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cocoon.client.config import ClientConfig
from cocoon.client.http_errors import error_body, from_wire_code
from cocoon.client.protocol import CLIENT_ONLY_FIELDS, ChatCompletionRequest, ClientOptions, CompletionRequest
from cocoon.client.sse import SseHoldback, add_cost_to_body
from cocoon.core.settings import load_config
from cocoon.errors import ConfigError
from cocoon.wire import ErrorCode


def test_chat_request_accepts_openai_fields_and_keeps_unknown_ones() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2,
            "logit_bias": {"1": 2},
        }
    )
    assert req.token_limit() == 1000
    assert req.model_extra == {"logit_bias": {"1": 2}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
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


def test_client_only_fields_are_known_and_bounded() -> None:
    assert {"max_coefficient", "timeout", "request_guid"} <= CLIENT_ONLY_FIELDS
    with pytest.raises(ValidationError):
        ClientOptions.model_validate({"timeout": -1})
    with pytest.raises(ValidationError):
        ClientOptions.model_validate({"unknown": 1})


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def test_holdback_passes_deltas_and_injects_cost_into_usage() -> None:
    delta = _sse({"choices": [{"delta": {"content": "hi"}}]})
    usage = _sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    done = b"data: [DONE]\n\n"
    hb = SseHoldback()
    stream = delta + usage + done
    passed = b"".join(hb.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert passed == delta
    tail = hb.finish({"cost_nano": 42})
    events = [e for e in tail.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[0][6:])["usage"]["cost"] == 42


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_holdback_never_loses_bytes_without_cost(data: bytes, step: int) -> None:
    hb = SseHoldback()
    out = b"".join(hb.feed(data[i : i + step]) for i in range(0, len(data), step))
    out += hb.finish(None)
    assert sorted(out) == sorted(data)


def test_cost_added_to_json_body_and_garbage_left_alone() -> None:
    body = json.dumps({"usage": {"total_tokens": 3}}).encode()
    assert json.loads(add_cost_to_body(body, {"cost_nano": 9}))["usage"]["cost"] == 9
    assert add_cost_to_body(b"not json", {"cost_nano": 9}) == b"not json"


def test_error_shapes_and_wire_mapping() -> None:
    body = error_body(402, "pay up at 0xdeadbeefcafe")
    assert body["error"]["type"] == "insufficient_quota"
    assert "deadbeef" not in body["error"]["message"]
    assert from_wire_code(ErrorCode.NOT_FOUND, "x").status == 404
    assert from_wire_code(ErrorCode.BUSY, "x").status == 429
    assert from_wire_code(ErrorCode.TIMEOUT, "x").status == 504
    assert from_wire_code(ErrorCode.PAYMENT_REQUIRED, "x").status == 402


def test_config_from_toml_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[client]\nhttp_port = 10500\nproxies = ["10.0.0.1:11002"]\n')
    cfg = load_config(
        ClientConfig, path, section="client", environ={"COCOON_CLIENT__MAX_COEFFICIENT": "1500"}
    )
    assert cfg.http_port == 10500 and cfg.max_coefficient == 1500 and cfg.proxies == ["10.0.0.1:11002"]
    cfg = load_config(ClientConfig, path, section="client", overrides={"http_port": 1}, environ={})
    assert cfg.http_port == 1


@pytest.mark.parametrize(
    "text",
    ["[client]\nhttp_port = 'x'\n", "[client]\nnope = 1\n", "[client\n", '[client]\nproxies = ["nohost"]\n'],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(ClientConfig, path, section="client", environ={})
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(ClientConfig, tmp_path / "none.toml", section="client", environ={})


async def test_hostile_json_bodies_are_400_not_500(tmp_path: Path) -> None:
    import httpx

    from cocoon.client import Client

    client = Client(ClientConfig(home=tmp_path, http_port=0, proxies=["127.0.0.1:9"]))
    await client.start()
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{client.http_port}/v1/chat/completions"
            for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"model": "m", "temperature": Infinity}', b"NaN"):
                reply = await http.post(url, content=raw)
                assert reply.status_code == 400, raw[:40]
                assert reply.json()["error"]["type"] == "invalid_request_error"
    finally:
        await client.stop()
