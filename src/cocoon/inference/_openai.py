"""OpenAI-shaped request parsing and response building for engines that generate text themselves
(the embedded and scripted engines). Pure functions, no I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocoon.inference._protocol import Endpoint
from cocoon.inference._usage import Usage

__all__ = [
    "SSE_DONE",
    "FinishReason",
    "InvalidRequest",
    "SamplingRequest",
    "dumps",
    "error_body",
    "new_id",
    "parse_request",
    "sse",
]

SSE_DONE = b"data: [DONE]\n\n"
MAX_N = 8
MAX_STOP = 4

FinishReason = str  # "stop" | "length"


class InvalidRequest(ValueError):
    """The request cannot be served; becomes an HTTP 400 with an OpenAI error body."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sse(value: Any) -> bytes:
    return b"data: " + dumps(value) + b"\n\n"


def new_id(endpoint: Endpoint) -> str:
    return ("chatcmpl-" if endpoint is Endpoint.CHAT else "cmpl-") + uuid.uuid4().hex


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: int = 400
) -> dict[str, Any]:
    """OpenAI's error shape (as vLLM sends it: the HTTP status repeated in ``code``)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingRequest:
    """What the embedded engine needs from an OpenAI request, validated."""

    endpoint: Endpoint
    model: str | None
    messages: tuple[Mapping[str, Any], ...] = ()  # chat
    prompt: str | tuple[int, ...] = ""  # completions: text or token ids
    stream: bool = False
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    echo: bool = False
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens whatever the model says


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{name}' must be a number", param=name)
    if not lo <= value <= hi:
        raise InvalidRequest(f"'{name}' must be between {lo} and {hi}", param=name)
    return float(value)


def _integer(body: Mapping[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer", param=name)
    if not lo <= value <= hi:
        raise InvalidRequest(f"'{name}' must be between {lo} and {hi}", param=name)
    return value


def _messages(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    out: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role'", param="messages")
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            texts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
            if not all(isinstance(t, str) for t in texts):
                raise InvalidRequest(f"messages[{i}].content has a bad text part", param="messages")
            content = "".join(t for t in texts if isinstance(t, str))
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string or parts", param="messages")
        out.append({"role": message["role"], "content": content})
    return tuple(out)


def _prompt(body: Mapping[str, Any]) -> str | tuple[int, ...]:
    prompt = body.get("prompt")
    # OpenAI allows a batch of prompts; one engine call serves one prompt, so only a batch of one.
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        if any(t < 0 for t in prompt):
            raise InvalidRequest("token ids in 'prompt' must be >= 0", param="prompt")
        return tuple(prompt)
    if isinstance(prompt, list) and len(prompt) > 1:
        raise InvalidRequest("this engine serves one prompt per request", param="prompt")
    raise InvalidRequest("'prompt' must be a string or an array of token ids", param="prompt")


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidRequest("'stop' must be a non-empty string or an array of them", param="stop")
    if len(stop) > MAX_STOP:
        raise InvalidRequest(f"'stop' takes at most {MAX_STOP} sequences", param="stop")
    return tuple(stop)


def parse_request(endpoint: Endpoint, body: Mapping[str, Any]) -> SamplingRequest:
    """Validate ``body`` for ``endpoint``; unknown fields are ignored (the proxy validated them)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    max_tokens = _integer(body, "max_completion_tokens", 0, 1 << 31)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 0, 1 << 31)
    echo = body.get("echo", False)
    if endpoint is Endpoint.COMPLETIONS and not isinstance(echo, bool):
        raise InvalidRequest("'echo' must be a boolean", param="echo")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise InvalidRequest("'ignore_eos' must be a boolean", param="ignore_eos")
    return SamplingRequest(
        endpoint=endpoint,
        model=model,
        messages=_messages(body) if endpoint is Endpoint.CHAT else (),
        prompt=_prompt(body) if endpoint is Endpoint.COMPLETIONS else "",
        stream=bool(stream),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        top_k=int(_number(body, "top_k", 40, -1, 1 << 20)),
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, 10.0),
        seed=_integer(body, "seed", -(1 << 63), (1 << 64) - 1),
        stop=_stop(body),
        n=_integer(body, "n", 1, MAX_N) or 1,
        echo=bool(echo) if endpoint is Endpoint.COMPLETIONS else False,
        ignore_eos=ignore_eos,
    )


# -- response building ----------------------------------------------------------------------------


def chunk(
    endpoint: Endpoint,
    *,
    id_: str,
    created: int,
    model: str,
    index: int = 0,
    text: str | None = None,
    role: bool = False,
    finish_reason: FinishReason | None = None,
) -> dict[str, Any]:
    """One streamed choice delta."""
    if endpoint is Endpoint.CHAT:
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        obj = "text_completion"
    return {"id": id_, "object": obj, "created": created, "model": model, "choices": [choice]}


def usage_chunk(endpoint: Endpoint, *, id_: str, created: int, model: str, usage: Usage) -> dict[str, Any]:
    """The final streamed chunk with ``choices: []`` that ``include_usage`` asks for."""
    obj = "chat.completion.chunk" if endpoint is Endpoint.CHAT else "text_completion"
    return {
        "id": id_,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    }


def full_response(
    endpoint: Endpoint,
    *,
    id_: str,
    created: int,
    model: str,
    choices: Sequence[tuple[str, FinishReason]],
    usage: Usage,
) -> dict[str, Any]:
    """The non-streamed answer."""
    if endpoint is Endpoint.CHAT:
        out = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            for i, (text, reason) in enumerate(choices)
        ]
        obj = "chat.completion"
    else:
        out = [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
        ]
        obj = "text_completion"
    return {
        "id": id_,
        "object": obj,
        "created": created,
        "model": model,
        "choices": out,
        "usage": usage.to_openai(),
    }


def force_include_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` that asks for the usage chunk when it streams (COCOON's rewrite)."""
    out = dict(body)
    if out.get("stream") is True:
        options = out.get("stream_options")
        options = dict(options) if isinstance(options, Mapping) else {}
        options["include_usage"] = True
        out["stream_options"] = options
    return out
