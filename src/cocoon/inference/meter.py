"""Sans-IO usage meter for OpenAI response bodies.

Feed it the bytes of an answer in any split (SSE stream or JSON / NDJSON body), then call
``finish()`` to get the :class:`~cocoon.oai.Usage` the body reported. SSE is cut into events by
:class:`cocoon.oai.SseDecoder`, the one decoder every relay uses. It also counts data events and content
characters so a relay (worker or proxy) can cross-check what it passed on against the usage it was
told. Buffers are capped: an SSE line longer than ``max_line_bytes`` or a JSON body longer than
``max_json_bytes`` raises :class:`EngineProtocolError`, as does anything that is not OpenAI-shaped.
After an error every further call raises the same error.

Unlike COCOON's byte counter (which cannot parse SSE and bills streamed answers as 0 tokens), this
meter reads the ``usage`` object from SSE chunks; when several chunks carry usage (vLLM's continuous
usage stats) the field-wise maximum is kept, as the reference does for JSON.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cocoon.inference.errors import EngineProtocolError
from cocoon.oai import SseDecoder, SseEvent, SseLineTooLong, Usage
from cocoon.oai.sse import SseNotAnEvent

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "BodyKind",
    "EventObserver",
    "MeterStats",
    "UsageMeter",
    "plain_delta",
]

DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_JSON_BYTES = 16 << 20
_DONE = b"[DONE]"

# Called with each SSE data event the meter parsed (a JSON object) while ``feed`` reads it, so a
# relay that needs more than the usage from the same events does not parse them a second time.
EventObserver = Callable[[dict[str, Any]], None]


def _unobserved(_event: dict[str, Any]) -> None:
    """No observer."""


class BodyKind(enum.Enum):
    AUTO = "auto"  # decided by the first non-blank byte: '{' or '[' means JSON, anything else SSE
    SSE = "sse"  # text/event-stream: "data: {...}\n\n" ... "data: [DONE]\n\n"
    JSON = "json"  # one JSON value, or newline-delimited JSON values

    @classmethod
    def from_content_type(cls, content_type: str | None) -> BodyKind:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == "text/event-stream":
            return cls.SSE
        if media in ("application/json", "application/x-ndjson", "application/jsonl"):
            return cls.JSON
        return cls.AUTO


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterStats:
    """What a meter has seen so far."""

    kind: BodyKind
    bytes_seen: int
    events: int  # SSE data events (without [DONE]) or JSON values
    content_chars: int  # characters of content / reasoning_content / text across all choices
    content_events: int  # events that carried content
    usage_seen: bool
    done: bool  # SSE: "[DONE]" arrived; JSON: the body parsed
    truncated: bool  # the body ended in the middle of an event
    error: str | None  # message of an OpenAI error object found in the body, if any


class UsageMeter:
    """Incremental parser of one response body; see the module docstring."""

    def __init__(
        self,
        kind: BodyKind = BodyKind.AUTO,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> None:
        if max_line_bytes < 16 or max_json_bytes < 16:
            raise ValueError("meter buffer limits must be at least 16 bytes")
        self._kind = kind
        self._max_line = max_line_bytes
        self._max_json = max_json_bytes
        self._buf = bytearray()  # JSON bodies (and the first bytes while the kind is unknown)
        # Strict: a relay must notice an upstream that sends something other than an event stream.
        # Made when first needed: most streams are cut without it (below).
        self._sse: SseDecoder | None = None
        # One-line ``data: ...`` events are cut here without the decoder; the bytes after the last
        # blank line wait in ``_tail``. Anything else hands the rest of the body to the decoder.
        self._tail = b""
        self._decoder_reads = False
        self._observer: EventObserver = _unobserved
        self._observing = False  # only while feed() runs: events a truncated end completes are not told
        self._usage = Usage()
        self._usage_seen = False
        self._bytes = 0
        self._events = 0
        self._chars = 0
        self._content_events = 0
        self._done = False
        self._truncated = False
        self._body_error: str | None = None
        self._failure: EngineProtocolError | None = None
        self._finished = False

    # -- public API -------------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """Usage seen so far (zeros until a usage object arrives)."""
        return self._usage

    @property
    def usage_seen(self) -> bool:
        return self._usage_seen

    @property
    def data_events(self) -> int:
        """SSE data events (without ``[DONE]``) or JSON values seen so far."""
        return self._events

    @property
    def content_events(self) -> int:
        """Events that carried at least one character of content."""
        return self._content_events

    @property
    def content_chars(self) -> int:
        """Characters of content / reasoning / text seen so far, over all choices."""
        return self._chars

    def partial_usage(self) -> Usage:
        """Best estimate for a body cut off before its usage arrived: the reported usage when there
        is one, else one completion token per event that carried content (a lower bound for every
        tokenizer, since each content delta holds at least one token)."""
        if self._usage_seen:
            return self._usage
        return Usage(completion_tokens=self._content_events)

    def observe(self, observer: EventObserver | None) -> None:
        """Tell ``observer`` each SSE data event that ``feed`` parses (see :data:`EventObserver`)."""
        self._observer = _unobserved if observer is None else observer

    def statistics(self) -> MeterStats:
        return MeterStats(
            kind=self._kind,
            bytes_seen=self._bytes,
            events=self._events,
            content_chars=self._chars,
            content_events=self._content_events,
            usage_seen=self._usage_seen,
            done=self._done,
            truncated=self._truncated,
            error=self._body_error,
        )

    def feed(self, data: bytes) -> None:
        """Consume the next piece of the body (any split, including empty)."""
        self._check_usable()
        if self._finished:
            raise RuntimeError("UsageMeter.feed() after finish()")
        self._bytes += len(data)
        self._observing = self._observer is not _unobserved
        try:
            self._feed(data)
        except EngineProtocolError as exc:
            self._failure = exc
            raise
        finally:
            self._observing = False

    def finish(self) -> Usage:
        """The body ended: flush what is buffered and return the usage. Idempotent."""
        self._check_usable()
        if not self._finished:
            self._finished = True
            try:
                self._finish()
            except EngineProtocolError as exc:
                self._failure = exc
                raise
        return self._usage

    # -- internals --------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise EngineProtocolError(f"meter failed earlier: {self._failure}")

    def _feed(self, data: bytes) -> None:
        if self._kind is BodyKind.AUTO:
            self._buf += data
            stripped = self._buf.lstrip()
            if not stripped:
                return
            self._kind = BodyKind.JSON if stripped[0] in b"{[" else BodyKind.SSE
            if self._kind is BodyKind.JSON:
                data = b""
            else:
                data = bytes(self._buf)
                self._buf.clear()
        if self._kind is BodyKind.JSON:
            self._buf += data
            if len(self._buf) > self._max_json:
                raise EngineProtocolError(f"JSON body longer than {self._max_json} bytes")
            return
        if self._decoder_reads or b"\r" in data:
            self._to_decoder(data)
            return
        # The common stream: events of one ``data: `` line each, cut at their blank lines. This is
        # what the decoder's own quick path does, without an event object per event.
        buf = self._tail + data if self._tail else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._tail = buf
            if len(buf) > self._max_line:  # one over-long line, or lines of one event: the decoder says
                self._to_decoder(b"")
            return
        self._tail = buf[cut + 2 :]
        parts = buf[:cut].split(b"\n\n")
        limit = self._max_line
        observer = self._observer if self._observing else None
        loads, count = orjson.loads, self._count_event
        for index, part in enumerate(parts):
            if part[:6] != b"data: " or b"\n" in part or len(part) > limit:
                # A comment, another field, a multi-line event, ...: the decoder reads from here on.
                self._tail = b"\n\n".join(parts[index:]) + b"\n\n" + self._tail
                self._to_decoder(b"")
                return
            # The common content event, as _dispatch reads it, without its layers; the rest there.
            raw = part[6:]
            if raw == _DONE:
                self._done = True
                continue
            try:
                value = loads(raw)
            except orjson.JSONDecodeError:
                value = None
            if type(value) is dict and "error" not in value and value.get("usage") is None and not self._done:
                count(value.get("choices"))
                if observer is not None:
                    observer(value)
            else:
                self._dispatch_parsed(raw, value, lenient=False)
        if len(self._tail) > limit:
            self._to_decoder(b"")

    def _to_decoder(self, data: bytes) -> None:
        """The decoder reads the rest of the body, starting at an event boundary (the tail first)."""
        self._decoder_reads = True
        if self._tail:
            data, self._tail = self._tail + data, b""
        self._handle_events(self._decode_sse(data, final=False))

    def _finish(self) -> None:
        if self._kind is BodyKind.JSON:
            self._parse_json_body(bytes(self._buf))
            self._buf.clear()
            return
        if self._kind is BodyKind.AUTO:  # nothing but whitespace arrived
            return
        if self._tail:
            self._to_decoder(b"")
        if self._sse is None:
            return  # every event was whole: nothing is held back
        # The body stopped in the middle of an event: read what is whole, remember the cut.
        self._truncated = self._truncated or self._sse.buffered > 0
        self._handle_events(self._decode_sse(b"", final=True), lenient=self._truncated)

    def _decode_sse(self, data: bytes, *, final: bool) -> list[SseEvent]:
        try:
            if self._sse is None:
                self._sse = SseDecoder(max_line_bytes=self._max_line, strict=True)
            return self._sse.finish() if final else self._sse.feed(data)
        except (SseLineTooLong, SseNotAnEvent) as exc:
            raise EngineProtocolError(str(exc)) from exc

    def _handle_events(self, events: list[SseEvent], *, lenient: bool = False) -> None:
        for index, event in enumerate(events):
            self._dispatch(event.data, lenient=lenient and index == len(events) - 1)

    def _dispatch(self, raw: bytes, *, lenient: bool) -> None:
        if raw == _DONE:  # before orjson, which would refuse it with an exception
            self._done = True
            return
        # orjson parses the event (and checks its UTF-8) several times faster than json. It is trusted
        # for the events whose numbers the meter does not read (content; ``"usage": null``, as some
        # servers send in every chunk) and for a usage whose counters it read as integers (orjson
        # reads integers past 64 bits as floats); anything else, and anything it refuses, goes the
        # careful way below, which reads the usage exactly and says what is wrong.
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        self._dispatch_parsed(raw, value, lenient=lenient)

    def _dispatch_parsed(self, raw: bytes, value: Any, *, lenient: bool) -> None:
        """``_dispatch`` after orjson read ``raw`` as ``value`` (``None`` where it refused it)."""
        if type(value) is not dict or "error" in value:
            self._dispatch_slow(raw, lenient=lenient)
            return
        usage = value.get("usage")
        if usage is not None and not _integral(usage):
            self._dispatch_slow(raw, lenient=lenient)
            return
        if self._done:
            raise EngineProtocolError("SSE data after [DONE]")
        if usage is None:
            self._count_event(value.get("choices"))
        else:
            self._handle_value(value)
        if self._observing:
            self._observer(value)

    def _dispatch_slow(self, raw: bytes, *, lenient: bool) -> None:
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EngineProtocolError(f"SSE data is not UTF-8: {exc}") from exc
        if data.strip() == "[DONE]":
            self._done = True
            return
        if self._done:
            raise EngineProtocolError("SSE data after [DONE]")
        try:
            value = json.loads(data)
        except ValueError as exc:
            if lenient:
                return
            raise EngineProtocolError(f"SSE data is not JSON: {data[:80]!r}") from exc
        self._handle_value(value)
        if self._observing and type(value) is dict:
            self._observer(value)

    def _parse_json_body(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EngineProtocolError(f"JSON body is not UTF-8: {exc}") from exc
        if not text.strip():
            return
        try:
            values: list[Any] = [json.loads(text)]
        except ValueError:
            values = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    values.append(json.loads(line))
                except ValueError as exc:
                    raise EngineProtocolError(f"body is not JSON: {text[:80]!r}") from exc
        for value in values:
            self._handle_value(value)
        self._done = True

    def _handle_value(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise EngineProtocolError(f"expected a JSON object, got {type(value).__name__}")
        error = value.get("error")
        if error is not None and self._body_error is None:
            message = error.get("message") if isinstance(error, Mapping) else error
            self._body_error = str(message)[:500]
        usage = value.get("usage")
        if usage is not None:
            try:
                seen = Usage.from_openai(usage)
            except ValueError as exc:
                raise EngineProtocolError(f"invalid usage object: {exc}") from exc
            self._usage = self._usage.merge_max(seen) if self._usage_seen else seen
            self._usage_seen = True
        self._count_event(value.get("choices"))

    def _count_event(self, choices: object) -> None:
        """One data event: count it and the characters of content its choices carry."""
        self._events += 1
        if type(choices) is list and len(choices) == 1:
            delta = plain_delta(choices[0])
            if delta is not None:  # the usual event: one choice, a delta of role and content
                content = delta.get("content")
                chars = len(content) if type(content) is str else 0
                self._chars += chars
                self._content_events += 1 if chars else 0
                return
        if isinstance(choices, list):
            chars = 0
            for choice in choices:
                if isinstance(choice, dict):
                    chars += _choice_chars(choice)
            self._chars += chars
            self._content_events += 1 if chars else 0


# What the usual streamed choice holds: nothing else counts as content in it but the delta's content.
_PLAIN_CHOICE = frozenset({"index", "delta", "logprobs", "finish_reason"})
_PLAIN_DELTA = frozenset({"role", "content"})


def plain_delta(choice: object) -> dict[str, Any] | None:
    """The delta of a choice with no text fields but ``delta.content`` (and ``role``), or ``None``
    (then the choice is read field by field). Shared with the worker's content tally."""
    if type(choice) is dict and choice.keys() <= _PLAIN_CHOICE:
        delta = choice.get("delta")
        if type(delta) is dict and delta.keys() <= _PLAIN_DELTA:
            return delta
    return None


def _integral(usage: object) -> bool:
    """No counter the meter reads from this usage (its fields, its details' fields) is a float: what
    orjson read is then exactly what json reads."""
    if type(usage) is not dict:
        return True  # refused the same way whichever parser read it
    for value in usage.values():
        if type(value) is float:
            return False
        if type(value) is dict and any(type(v) is float for v in value.values()):
            return False
    return True


# Parsed JSON holds plain dicts: ``isinstance(x, dict)`` is exact here and far cheaper than ``Mapping``.
_CONTENT_FIELDS = ("content", "reasoning_content", "reasoning")


def _choice_chars(choice: dict[str, Any]) -> int:
    text = choice.get("text")
    total = len(text) if isinstance(text, str) else 0
    for key in ("delta", "message"):
        part = choice.get(key)
        if isinstance(part, dict):
            for field in _CONTENT_FIELDS:
                value = part.get(field)
                if isinstance(value, str):
                    total += len(value)
            if "tool_calls" in part:
                total += _tool_call_chars(part["tool_calls"])
    return total


def _tool_call_chars(calls: object) -> int:
    """Generated characters of tool calls (name and arguments): a call is content too."""
    if not isinstance(calls, list):
        return 0
    total = 0
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            total += sum(
                len(v) for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
            )
    return total
