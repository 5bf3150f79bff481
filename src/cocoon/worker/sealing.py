"""Sealed requests at the worker: open the envelope with a key from its TEE, seal every answer frame.

A request with ``meta["e2ee"]`` (contract 3 of round three) carries a body only this worker's
sealing keys can open (:mod:`cocoon.e2ee`). The worker opens it with the first key it holds of those
the envelope names, under the routing ``aad`` rebuilt from what it received (endpoint, model,
max_tokens and the envelope id): a proxy that changed any of them gets a refusal, not an answer.
Every answer chunk (error bodies too) is then sealed in order, and the end marker carries a trailer
the client checks against the receipt: the usage, SHA-256 of the plaintext answer and its
completion id, which the proxy never sees.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cocoon import wire
from cocoon.e2ee import (
    MAX_ENVELOPE_ID,
    STALE_PHRASE,
    AnswerSealer,
    SealedRequest,
    SealError,
    SealKeyPair,
    open_request,
    routing_aad,
)
from cocoon.inference.meter import EventObserver, plain_delta
from cocoon.node.receipt import ResponseDigest
from cocoon.oai import SseDecoder, SseEvent, SseLineTooLong

__all__ = ["STALE_PHRASE", "WITHHELD", "SealedAnswer", "SealedRefusal", "is_sealed", "open_sealed"]

# An engine's error text may quote the prompt or the answer: a sealed request's errors go out without it.
WITHHELD = "details withheld: the request is sealed"

FindKey = Callable[[bytes], SealKeyPair | None]


class SealedRefusal(Exception):
    """The sealed request cannot be served here: sent to the proxy as ``code`` and ``message``."""

    def __init__(self, code: wire.ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_sealed(request: wire.Request) -> bool:
    return "e2ee" in (request.meta or {})


def _envelope_id(meta: Mapping[str, Any] | None) -> str:
    raw = (meta or {}).get("e2ee")
    envelope = raw.get("id") if isinstance(raw, Mapping) and raw.get("v") == 1 else None
    if not isinstance(envelope, str) or not 0 < len(envelope) <= MAX_ENVELOPE_ID:
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, "meta.e2ee must carry v = 1 and the envelope id")
    return envelope


_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")  # as the proxy's relay tally
MAX_JSON_BYTES = 16 << 20


def _text_bytes(value: object) -> int:
    # Parsed JSON holds plain dicts, lists and strs: exact type checks are enough, and far cheaper.
    if type(value) is str:
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if type(value) is list:
        return sum(_text_bytes(p.get("text")) for p in value if type(p) is dict)
    return 0


class ContentTally:
    """What the plaintext of an answer carries, counted here for the proxy that cannot read it: text
    bytes, non-empty deltas, tool calls, and how many frames it took to carry the last content (so
    the proxy knows whether the frames it relayed before an app hung up held the whole answer).

    The same fields as the proxy's relay tally of a plain answer; the proxy takes them only as a
    tightening of what the sealed sizes allow (never above them), from the attested worker image.
    """

    def __init__(self) -> None:
        self.text_bytes = self.deltas = self.tool_calls = 0
        self.content_frames = 0  # frames up to the last that completed content
        self._frames = 0
        self._mode: str | None = None
        self._sse: SseDecoder | None = None  # made on the first event-stream frame the meter does not read
        self._json = bytearray()
        self._metered = False  # the engine's meter tells the parsed events (see :meth:`observer`)
        self._pending = 0  # text the meter told since the last frame

    def observer(self) -> EventObserver:
        """For the meter of the answer: the SSE events it parses are counted here without parsing
        them again. The meter reads each chunk before it is sealed, so its events belong to the next
        :meth:`feed`; the events only its end completes (a cut stream) are not told, as a decoder
        here would not dispatch them either."""
        self._metered = True
        return self._event_value

    def _event_value(self, value: dict[str, Any]) -> None:
        self._pending += self._choices(value, streamed=True)

    def feed(self, chunk: bytes) -> None:
        self._frames += 1
        if self._mode is None and chunk.strip():
            self._mode = "json" if chunk.lstrip()[:1] in (b"{", b"[") else "sse"
        if self._mode == "json":
            if len(self._json) + len(chunk) <= MAX_JSON_BYTES:
                self._json += chunk
            self.content_frames = self._frames if chunk.strip() else self.content_frames
            return
        if self._metered:
            if self._pending:
                self.content_frames = self._frames
                self._pending = 0
            return
        if self._sse is None:
            self._sse = SseDecoder(max_line_bytes=MAX_JSON_BYTES)
        try:
            events = self._sse.feed(chunk)
        except SseLineTooLong:
            self._sse = SseDecoder(max_line_bytes=MAX_JSON_BYTES)
            return
        if sum(self._event(e) for e in events):
            self.content_frames = self._frames

    def finish(self) -> dict[str, int]:
        if self._mode == "json":
            with contextlib.suppress(ValueError, RecursionError):
                self._choices(json.loads(self._json), streamed=False)
        return {
            "text_bytes": self.text_bytes,
            "deltas": self.deltas,
            "tool_calls": self.tool_calls,
            "content_frames": self.content_frames,
        }

    def _event(self, event: SseEvent) -> int:
        if event.is_done:
            return 0
        try:
            return self._choices(event.json(), streamed=True)
        except (ValueError, RecursionError):
            return 0

    def _choices(self, body: object, *, streamed: bool) -> int:
        choices = body.get("choices") if type(body) is dict else None
        if type(choices) is not list:
            return 0
        if len(choices) == 1:
            delta = plain_delta(choices[0])
            if delta is not None:  # the usual event: only the delta's content is text
                n = _text_bytes(delta.get("content"))
                self.deltas += 1 if streamed and n else 0
                self.text_bytes += n
                return n
        return self._each_choice(choices, streamed)

    def _each_choice(self, choices: list[Any], streamed: bool) -> int:
        """The text of ``choices`` read field by field (any shape)."""
        total = 0
        for choice in choices:
            if type(choice) is not dict:
                continue
            n = _text_bytes(choice.get("text"))
            for key in ("delta", "message"):
                message = choice.get(key)
                if type(message) is dict:
                    for name in _TEXT_FIELDS:
                        value = message.get(name)
                        if value is not None:
                            n += _text_bytes(value)
                    if "tool_calls" in message:
                        n += self._calls(message["tool_calls"], streamed)
            if streamed and n:
                self.deltas += 1
            total += n
        self.text_bytes += total
        return total

    def _calls(self, calls: object, streamed: bool) -> int:
        n = 0
        for call in calls if type(calls) is list else []:
            function = call.get("function") if type(call) is dict else None
            if type(function) is dict:
                n += _text_bytes(function.get("name")) + _text_bytes(function.get("arguments"))
                self.tool_calls += 1 if not streamed or call.get("id") else 0
        return n


@dataclass(slots=True)
class SealedAnswer:
    """One sealed request opened: its body, and the sealer of its answer."""

    body: bytes
    sealer: AnswerSealer
    sealed_bytes: int = 0
    plain: ResponseDigest = field(default_factory=ResponseDigest)  # of the plaintext: for the trailer
    content: ContentTally = field(default_factory=ContentTally)  # what it carries: for the proxy's bound

    def seal(self, chunk: bytes) -> bytes:
        self.plain.update(chunk)
        self.content.feed(chunk)
        frame = self.sealer.seal(chunk)
        self.sealed_bytes += len(frame)
        return frame

    def end_meta(self, usage: wire.Usage) -> dict[str, Any]:
        """``ResponseEnd.meta["e2ee"]``: the counts the proxy meters by, and the sealed end marker."""
        frames = self.sealer.frames  # the data frames: the end marker is not sealed yet
        trailer = {
            "completion_id": self.plain.completion_id,
            "frames": frames,
            "plain_sha256": self.plain.digest().hex(),
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "cached_tokens": usage.cached_tokens,
                "completion_tokens": usage.completion_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            },
        }
        end = self.sealer.finish(orjson.dumps(trailer, option=orjson.OPT_SORT_KEYS))
        return {
            "v": 1,
            "frames": frames,
            "bytes": self.sealed_bytes,
            "content": self.content.finish(),
            "end": base64.b64encode(end).decode(),
        }


def open_sealed(request: wire.Request, find: FindKey) -> SealedAnswer:
    """Open a sealed request with the first key ``find`` holds of those it names; raises
    :class:`SealedRefusal` (the proxy retries another worker on UNAVAILABLE)."""
    envelope_id = _envelope_id(request.meta)
    try:
        sealed = SealedRequest.from_bytes(request.body)
    except SealError as exc:
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, f"malformed sealed request: {exc}") from exc
    keypair = next((k for k in map(find, sealed.key_ids) if k is not None), None)
    if keypair is None:
        raise SealedRefusal(
            wire.ErrorCode.UNAVAILABLE, f"this worker holds none of the {STALE_PHRASE} the request names"
        )
    aad = routing_aad(request.endpoint, request.model, request.max_tokens, envelope_id)
    try:
        opened = open_request(sealed, keypair, aad=aad)  # parsed once, above
    except SealError as exc:
        # Tampered with, or a routing field changed on the way: never served.
        raise SealedRefusal(wire.ErrorCode.BAD_REQUEST, f"the sealed request does not open: {exc}") from exc
    return SealedAnswer(body=opened.body, sealer=AnswerSealer(opened.content_key, aad=aad))
