"""OpenAI-shaped request parsing and response building for engines that generate text themselves
(the embedded and scripted engines). Pure functions, no I/O."""

from __future__ import annotations

import base64 as b64
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocoon.inference._features import (
    NO_RULES,
    InvalidRequest,
    OutputRules,
    ToolCall,
    UnsupportedParameter,
    parse_output_rules,
)
from cocoon.inference._generation import TokenLogprob
from cocoon.inference._protocol import Endpoint
from cocoon.oai import Usage

__all__ = [
    "SSE_DONE",
    "ChoiceOut",
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
    rules: OutputRules = NO_RULES  # tools, JSON format, logprobs


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


def _content(i: int, content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content must be a string or parts", param="messages")
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_image"):
            where = f"messages[{i}].content[{j}].image_url"
            raise UnsupportedParameter(f"this model has no vision: `{where}` is not supported", param=where)
        elif kind == "input_audio":
            where = f"messages[{i}].content[{j}].input_audio"
            raise UnsupportedParameter(f"this model takes no audio: `{where}` is not supported", param=where)
        else:
            where = f"messages[{i}].content[{j}]"
            raise InvalidRequest(f"{where} must be a text part", param=where)
    return "".join(texts)


def _tool_calls(i: int, calls: object) -> list[dict[str, Any]]:
    """An assistant's earlier tool calls, arguments decoded (they are JSON text on the wire)."""
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise InvalidRequest(f"{where} must be an array", param=where)
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"{where} entries need a function name", param=where)
        arguments = function.get("arguments") or "{}"
        try:
            decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            raise InvalidRequest(f"{where}: arguments are not JSON", param=where) from None
        out.append({"name": function["name"], "arguments": decoded})
    return out


def _messages(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    out: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role'", param="messages")
        parsed: dict[str, Any] = {"role": message["role"], "content": _content(i, message.get("content"))}
        if message.get("tool_calls"):
            parsed["tool_calls"] = _tool_calls(i, message["tool_calls"])
        out.append(parsed)
    return tuple(out)


# Parameters OpenAI defines that this engine cannot honour: a request that sets one gets a 400 naming
# it (never a silent drop). The value beside each name is the one that asks for nothing.
_REFUSED: dict[str, tuple[object, ...]] = {
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "functions": (None, []),
    "function_call": (None, "none"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
}


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name, harmless in _REFUSED.items():
        value = body.get(name)
        if not any(value == h and type(value) is type(h) for h in harmless):
            hint = "; use 'tools'" if name in ("functions", "function_call") else ""
            raise UnsupportedParameter(f"this model does not support `{name}`{hint}", param=name)


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
    _refuse_unsupported(body)
    rules = parse_output_rules(endpoint is Endpoint.CHAT, body)
    if rules.top_logprobs is not None and endpoint is Endpoint.COMPLETIONS and echo:
        raise UnsupportedParameter("prompt logprobs ('echo' with 'logprobs') are not supported", param="echo")
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
        rules=rules,
    )


# -- response building ----------------------------------------------------------------------------


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """Chat's ``logprobs`` object: one entry per token, each with its top alternatives."""

    def one(token: str, raw: bytes, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(raw)}

    return {
        "content": [
            one(e.token, e.raw, e.logprob) | {"top_logprobs": [one(*alt) for alt in e.top]} for e in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object (parallel arrays; ``offset`` of the first token)."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{alt[0]: alt[2] for alt in e.top} for e in entries],
        "text_offset": offsets,
    }


def _logprobs(
    endpoint: Endpoint, entries: Sequence[TokenLogprob] | None, offset: int
) -> dict[str, Any] | None:
    if entries is None:
        return None
    return chat_logprobs(entries) if endpoint is Endpoint.CHAT else completion_logprobs(entries, offset)


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
    tool_calls: Sequence[ToolCall] = (),
    logprobs: Sequence[TokenLogprob] | None = None,
    text_offset: int = 0,
) -> dict[str, Any]:
    """One streamed choice delta (``logprobs`` entries belong to this delta's tokens)."""
    if endpoint is Endpoint.CHAT:
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        if tool_calls:
            delta["tool_calls"] = [call.to_openai() | {"index": k} for k, call in enumerate(tool_calls)]
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": _logprobs(endpoint, logprobs, text_offset),
            "finish_reason": finish_reason,
        }
        obj = "chat.completion.chunk"
    else:
        choice = {
            "index": index,
            "text": text or "",
            "logprobs": _logprobs(endpoint, logprobs, text_offset),
            "finish_reason": finish_reason,
        }
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ChoiceOut:
    """One finished choice of a non-streamed answer."""

    text: str
    finish_reason: FinishReason
    tool_calls: Sequence[ToolCall] = ()
    logprobs: Sequence[TokenLogprob] | None = None


def _choice(endpoint: Endpoint, index: int, choice: ChoiceOut) -> dict[str, Any]:
    logprobs = _logprobs(endpoint, choice.logprobs, 0)
    if endpoint is Endpoint.COMPLETIONS:
        return {
            "index": index,
            "text": choice.text,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }
    message: dict[str, Any] = {"role": "assistant", "content": choice.text}
    if choice.tool_calls:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [call.to_openai() for call in choice.tool_calls],
        }
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": choice.finish_reason}


def full_response(
    endpoint: Endpoint,
    *,
    id_: str,
    created: int,
    model: str,
    choices: Sequence[tuple[str, FinishReason] | ChoiceOut],
    usage: Usage,
) -> dict[str, Any]:
    """The non-streamed answer."""
    outs = [c if isinstance(c, ChoiceOut) else ChoiceOut(text=c[0], finish_reason=c[1]) for c in choices]
    return {
        "id": id_,
        "object": "chat.completion" if endpoint is Endpoint.CHAT else "text_completion",
        "created": created,
        "model": model,
        "choices": [_choice(endpoint, i, c) for i, c in enumerate(outs)],
        "usage": usage.to_openai(),
    }


def embedding_response(
    vectors: Sequence[Sequence[float]], *, model: str, prompt_tokens: int, base64: bool
) -> dict[str, Any]:
    """``/v1/embeddings``'s answer; ``base64`` packs each vector as little-endian float32 (what the
    openai SDK asks for by default)."""

    def encode(vector: Sequence[float]) -> list[float] | str:
        if not base64:
            return list(vector)
        return b64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
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
