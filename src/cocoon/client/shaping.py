"""Shaping the worker's answer into what the app asked for (sans-IO).

The client always asks the engine for usage (billing needs it), so the answer carries a final usage
chunk the app may not have asked for. OpenAI sends that chunk — ``choices: []`` — only with
``stream_options.include_usage``; a stream that has it anyway breaks the SDKs' own
``chunk.choices[0].delta`` loop. :class:`ChatShaper` therefore drops it unless it was asked for, and
then sends it last with the cost filled in. The cost of every answer also travels where no loop
trips on it: ``usage.cost`` of a non-streamed body, the ``x-cocoon-cost-nano`` header, and a final
SSE comment (``: cocoon {...}``) that SSE parsers skip.

:class:`ResponsesShaper` turns the same chat answer into the Responses API's object or events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from cocoon.client.http_errors import sse_error
from cocoon.oai import SSE_DONE, ApiError, ErrorKind, SseDecoder, SseEvent, SseLineTooLong, Usage, encode_sse
from cocoon.oai.responses import ResponsesContext, ResponsesStream, chat_to_response
from cocoon.oai.sse import DONE, last_of_data_run

__all__ = ["ChatShaper", "ResponsesShaper", "Shaper"]

MAX_SSE_LINE = 4 * 1024 * 1024


class Shaper(Protocol):
    def start(self) -> bytes: ...
    def feed(self, data: bytes) -> bytes: ...
    def end(self, usage: Usage, cost: Mapping[str, Any]) -> bytes: ...
    def fail(self, exc: ApiError) -> bytes: ...
    def whole(self, body: bytes, cost: Mapping[str, Any]) -> bytes: ...


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _cost_fields(cost: Mapping[str, Any]) -> dict[str, Any]:
    return {"cost": cost.get("cost_nano", 0), "cocoon": dict(cost)}


def _json_object(event: SseEvent) -> dict[str, Any] | None:
    try:
        obj = event.json()
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _events(decoder: SseDecoder, data: bytes) -> list[SseEvent]:
    try:
        return decoder.feed(data)
    except SseLineTooLong as exc:
        raise ApiError(ErrorKind.UPSTREAM_FAILED, f"the worker's stream broke the SSE format: {exc}") from exc


def _plain_prefix(data: bytes) -> int:
    """Where the first event that mentions ``"usage"`` or ``[DONE]`` starts (the length if none)."""
    found = [i for i in (data.find(b'"usage"'), data.find(DONE)) if i >= 0]
    if not found:
        return len(data)
    end = data.rfind(b"\n\n", 0, min(found))
    return end + 2 if end >= 0 else 0


def cost_comment(cost: Mapping[str, Any]) -> bytes:
    summary = {k: cost[k] for k in ("cost_nano", "adjusted_tokens", "receipt_verified") if k in cost}
    return b": cocoon " + _dumps(summary) + b"\n\n"


class ChatShaper:
    """Chat and legacy completions (and embeddings, never streamed)."""

    def __init__(self, *, wants_usage: bool) -> None:
        self._wants_usage = wants_usage
        self._decoder = SseDecoder(max_line_bytes=MAX_SSE_LINE)
        self._usage_chunk: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}
        self._last_raw: bytes | None = None  # the last event, when it was relayed unparsed

    def start(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> bytes:
        if self._decoder.idle:
            # Plain one-line events before the first that mentions usage or [DONE] are relayed as
            # they came (decoding and re-encoding them would give them back); the rest is decoded.
            cut = _plain_prefix(data)
            last = last_of_data_run(data[:cut], max_line_bytes=MAX_SSE_LINE) if cut else None
            if last is not None:
                self._last_raw = last
                return data if cut == len(data) else data[:cut] + self._feed_events(data[cut:])
        return self._feed_events(data)

    def _feed_events(self, data: bytes) -> bytes:
        out = bytearray()
        for event in _events(self._decoder, data):
            if event.is_done:
                continue  # sent by end(), after the usage chunk
            if b'"usage"' not in event.data:
                # No usage here: relayed as it is, parsed only if end() needs its id and model.
                out += encode_sse(event.data, event=event.event)
                self._last_raw = event.data
                continue
            obj = _json_object(event)
            self._last_raw = None
            if obj is None or obj.get("usage") is None:
                out += encode_sse(event.data, event=event.event)
                self._last = obj or self._last
                continue
            self._last = obj
            if not obj.get("choices"):
                self._usage_chunk = obj  # held: sent by end() if the app asked for it
                continue
            # Usage on a chunk with choices (continuous usage stats): OpenAI puts it only at the end.
            self._usage_chunk = {**obj, "choices": []}
            obj["usage"] = None
            if not self._wants_usage:
                del obj["usage"]
            out += encode_sse(obj, event=event.event)
        return bytes(out)

    def _final_usage_chunk(self, usage: Usage) -> dict[str, Any]:
        if self._usage_chunk is not None:
            return self._usage_chunk
        if self._last_raw is not None:
            self._last = _json_object(SseEvent(self._last_raw)) or self._last
        meta: dict[str, Any] = {
            k: self._last[k] for k in ("id", "object", "created", "model") if k in self._last
        }
        return {**meta, "choices": [], "usage": usage.to_openai()}

    def end(self, usage: Usage, cost: Mapping[str, Any]) -> bytes:
        out = bytearray()
        for event in self._decoder.finish():
            out += self.feed(encode_sse(event.data, event=event.event))
        if self._wants_usage:
            chunk = self._final_usage_chunk(usage)
            chunk["usage"] = {**chunk["usage"], **_cost_fields(cost)}
            out += encode_sse(chunk)
        return bytes(out) + cost_comment(cost) + SSE_DONE

    def fail(self, exc: ApiError) -> bytes:
        return sse_error(exc)

    def whole(self, body: bytes, cost: Mapping[str, Any]) -> bytes:
        """A non-streamed body: ``usage.cost`` (nanoTON) and ``usage.cocoon`` added if it is JSON."""
        try:
            obj = json.loads(body)
        except ValueError:
            return body
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return body
        obj["usage"].update(_cost_fields(cost))
        return _dumps(obj)


class ResponsesShaper:
    """``POST /v1/responses`` answered from a chat completion."""

    def __init__(self, ctx: ResponsesContext) -> None:
        self._ctx = ctx
        self._stream = ResponsesStream(ctx)
        self._decoder = SseDecoder(max_line_bytes=MAX_SSE_LINE)

    def start(self) -> bytes:
        return self._stream.opening()

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for event in _events(self._decoder, data):
            obj = None if event.is_done else _json_object(event)
            if obj is None:
                continue
            if isinstance(obj.get("error"), Mapping):
                error = obj["error"]
                raise ApiError(ErrorKind.UPSTREAM_FAILED, str(error.get("message") or "the worker failed"))
            out += self._stream.feed(obj)
        return bytes(out)

    def end(self, usage: Usage, cost: Mapping[str, Any]) -> bytes:
        return self._stream.finish(usage=usage, extra_usage=_cost_fields(cost))

    def fail(self, exc: ApiError) -> bytes:
        return self._stream.fail(exc.kind, exc.message)

    def whole(self, body: bytes, cost: Mapping[str, Any]) -> bytes:
        try:
            chat = json.loads(body)
        except ValueError:
            return body
        if not isinstance(chat, dict) or "choices" not in chat:
            return body  # an error body: passed through as it is
        return _dumps(chat_to_response(chat, self._ctx, extra_usage=_cost_fields(cost)))
