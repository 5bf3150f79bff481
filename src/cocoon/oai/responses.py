"""The Responses API (``POST /v1/responses``) on top of chat completions (sans-IO).

A Responses request is translated to a chat completions body for the worker, and the worker's
answer (one JSON body, or a stream of chat chunks) back into a ``response`` object or the stream of
Responses events (``response.created`` … ``response.output_text.delta`` … ``response.completed``
with ``usage``). Text in, text (and function calls) out; what cannot be translated is refused with
``unsupported_parameter`` naming the field, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cocoon.oai.errors import ApiError, ErrorKind
from cocoon.oai.sse import encode_sse
from cocoon.oai.usage import Usage

__all__ = ["ResponsesContext", "ResponsesStream", "chat_to_response", "responses_to_chat"]

_PASS_THROUGH = ("temperature", "top_p", "user", "parallel_tool_calls", "seed", "stream")
_ECHOED = ("instructions", "max_output_tokens", "metadata", "temperature", "top_p", "user")
_ACCEPTED = frozenset({"model", "input", "text", "tools", "tool_choice", "store", "truncation"})
_ACCEPTED |= frozenset(_PASS_THROUGH) | frozenset(_ECHOED)


def _unsupported(param: str, why: str) -> ApiError:
    return ApiError(ErrorKind.UNSUPPORTED_PARAMETER, f"`{param}`: {why}", param=param)


def _invalid(param: str, why: str) -> ApiError:
    return ApiError(ErrorKind.INVALID_REQUEST, f"{param}: {why}", param=param)


@dataclass(frozen=True, slots=True)
class ResponsesContext:
    """What the answer needs from the request: ids, time and the fields a response echoes."""

    response_id: str
    created_at: int
    model: str
    echo: Mapping[str, Any] = field(default_factory=dict)

    def response(self, status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": self.echo.get("parallel_tool_calls", True),
            "tool_choice": self.echo.get("tool_choice", "auto"),
            "tools": list(self.echo.get("tools") or []),
            "text": self.echo.get("text") or {"format": {"type": "text"}},
            "usage": None,
        }
        base.update({key: self.echo.get(key) for key in _ECHOED})
        base.update(extra)
        return base


def _content_part(part: object, index: str) -> dict[str, Any]:
    if not isinstance(part, Mapping):
        raise _invalid(index, "a content part must be an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise _invalid(index, "text must be a string")
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _unsupported(index, "only input_image parts with an image_url are supported")
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    raise _unsupported(index, f"content parts of type {kind!r} are not supported")


def _message(item: object, index: int) -> dict[str, Any]:
    where = f"input[{index}]"
    if not isinstance(item, Mapping):
        raise _invalid(where, "an input item must be an object")
    if item.get("type", "message") != "message":
        raise _unsupported(where, f"input items of type {item.get('type')!r} are not supported")
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _invalid(f"{where}.role", "must be user, assistant, system or developer")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", "must be a string or a list of parts")
    parts = [_content_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
    if role != "user" and all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        items: list[dict[str, Any]] = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        items = [_message(item, i) for i, item in enumerate(raw)]
    else:
        raise _invalid("input", "must be a non-empty string or list of input items")
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("instructions", "must be a string")
        items.insert(0, {"role": "system", "content": instructions})
    return items


def _tools(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise _invalid("tools", "must be a list")
        converted = []
        for tool in tools:
            if not isinstance(tool, Mapping) or tool.get("type") != "function":
                raise _unsupported("tools", "only function tools are supported")
            function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
            converted.append({"type": "function", "function": function})
        out["tools"] = converted
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        if choice.get("type") != "function":
            raise _unsupported("tool_choice", "only function tool choices are supported")
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        out["tool_choice"] = choice
    return out


def _text_format(body: Mapping[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    if text is None:
        return {}
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if fmt is None:
        return {}
    if not isinstance(fmt, Mapping):
        raise _invalid("text.format", "must be an object")
    kind = fmt.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise _unsupported("text.format", f"format {kind!r} is not supported")


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key in body:
        if key not in _ACCEPTED:
            raise _unsupported(key, "not supported by this endpoint (responses are not stored)")
    if body.get("store"):
        raise _unsupported("store", "responses are not stored here; send store=false")
    if body.get("truncation") not in (None, "disabled"):
        raise _unsupported("truncation", "only 'disabled' is supported")


def responses_to_chat(
    body: Mapping[str, Any], *, response_id: str, created_at: int
) -> tuple[dict[str, Any], ResponsesContext]:
    """The chat completions body for a Responses request, and the context to answer it with."""
    _refuse_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "must be a non-empty string")
    chat: dict[str, Any] = {"model": model, "messages": _messages(body)}
    chat.update({k: body[k] for k in _PASS_THROUGH if body.get(k) is not None})
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _invalid("max_output_tokens", "must be a positive integer")
        chat["max_tokens"] = limit
    chat.update(_tools(body))
    chat.update(_text_format(body))
    echo = {
        k: body[k] for k in (*_ECHOED, "tools", "tool_choice", "text", "parallel_tool_calls") if k in body
    }
    return chat, ResponsesContext(response_id, created_at, model, echo)


def _usage_of(raw: object) -> Usage | None:
    try:
        return Usage.from_openai(raw) if isinstance(raw, Mapping) else None
    except ValueError:
        return None


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def _function_item(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    call_id = str(call.get("id") or "")
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": str(function.get("name") or ""),
        "arguments": str(function.get("arguments") or ""),
        "status": "completed",
    }


def _finish_fields(
    finish_reason: object, usage: Usage | None, extra_usage: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "completed"}
    if finish_reason == "length":
        out = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    if usage is not None:
        out["usage"] = {**usage.to_responses(), **extra_usage}
    return out


def chat_to_response(
    chat: Mapping[str, Any], ctx: ResponsesContext, *, extra_usage: Mapping[str, Any]
) -> dict[str, Any]:
    """A non-streamed chat completion as a ``response`` object (``extra_usage``: e.g. the cost)."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(text, str) and text:
        output.append(_message_item(f"msg_{ctx.response_id[5:]}", text, "completed"))
    for call in (message.get("tool_calls") or []) if isinstance(message, Mapping) else []:
        if isinstance(call, Mapping):
            output.append(_function_item(call))
    fields = _finish_fields(choice.get("finish_reason"), _usage_of(chat.get("usage")), extra_usage)
    return ctx.response(fields.pop("status"), output, **fields)


class ResponsesStream:
    """Turns the chat chunks of one stream into Responses events, in order, numbered."""

    def __init__(self, ctx: ResponsesContext) -> None:
        self._ctx = ctx
        self._seq = 0
        self._item_id = f"msg_{ctx.response_id[5:]}"
        self._text: list[str] = []
        self._open = False
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish_reason: object = None
        self._usage: Usage | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return encode_sse(payload, event=kind)

    def opening(self) -> bytes:
        response = self._ctx.response("in_progress", [])
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _open_message(self) -> bytes:
        self._open = True
        item = {**_message_item(self._item_id, "", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": self._item_id, "output_index": 0}
        return self._event("response.output_item.added", output_index=0, item=item) + self._event(
            "response.content_part.added", **where, content_index=0, part=part
        )

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        """Events for one chat chunk (often none: a role-only delta, the usage chunk)."""
        usage = _usage_of(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return b""
        choice = choices[0]
        if choice.get("finish_reason") is not None:
            self._finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        out = bytearray()
        text = delta.get("content") if isinstance(delta, Mapping) else None
        if isinstance(text, str) and text:
            if not self._open:
                out += self._open_message()
            self._text.append(text)
            where = {"item_id": self._item_id, "output_index": 0, "content_index": 0}
            out += self._event("response.output_text.delta", **where, delta=text, logprobs=[])
        for call in (delta.get("tool_calls") or []) if isinstance(delta, Mapping) else []:
            self._add_call(call)
        return bytes(out)

    def _add_call(self, call: object) -> None:
        if not isinstance(call, Mapping):
            return
        index = call.get("index", len(self._calls))
        slot = self._calls.setdefault(index if isinstance(index, int) else 0, {"function": {}})
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        if isinstance(function, Mapping):
            if function.get("name"):
                slot["function"]["name"] = function["name"]
            slot["function"]["arguments"] = slot["function"].get("arguments", "") + str(
                function.get("arguments") or ""
            )

    def _output(self) -> list[dict[str, Any]]:
        output = [_message_item(self._item_id, "".join(self._text), "completed")] if self._open else []
        return output + [_function_item(call) for _, call in sorted(self._calls.items())]

    def finish(self, *, usage: Usage | None = None, extra_usage: Mapping[str, Any] | None = None) -> bytes:
        """The closing events; ``usage`` overrides what the stream said (the metered truth)."""
        out = bytearray()
        text = "".join(self._text)
        if self._open:
            where = {"item_id": self._item_id, "output_index": 0, "content_index": 0}
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out += self._event("response.output_text.done", **where, text=text, logprobs=[])
            out += self._event("response.content_part.done", **where, part=part)
            out += self._event("response.output_item.done", output_index=0, item=self._output()[0])
        base = len(self._output()) - len(self._calls)
        for offset, item in enumerate(self._output()[base:]):
            out += self._event("response.output_item.added", output_index=base + offset, item=item)
            out += self._event("response.output_item.done", output_index=base + offset, item=item)
        fields = _finish_fields(self._finish_reason, usage or self._usage, extra_usage or {})
        status = fields.pop("status")
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return bytes(out) + self._event(kind, response=self._ctx.response(status, self._output(), **fields))

    def fail(self, kind: ErrorKind, message: str) -> bytes:
        """The stream broke: ``response.failed`` with the error, after what was already sent."""
        error = {"code": kind.value, "message": message}
        response = self._ctx.response("failed", self._output(), error=error)
        return self._event("response.failed", response=response)
