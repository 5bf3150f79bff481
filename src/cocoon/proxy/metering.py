"""Cross-check a worker's reported usage against what the proxy actually relayed to the client.

The worker reports usage in four classes (prompt ⊇ cached, completion ⊇ reasoning). The proxy cannot re-run
the tokenizer, but it sees every byte it relays, and a few facts bound honest counts:

* **Completion upper bound.** Every generated token that is not a special token decodes to at least one byte
  (byte-level BPE and SentencePiece with byte fallback alike). So::

      completion ≤ relayed_bytes + slack_tokens + per_tool_call × tool_calls + ceil(slack_ratio × relayed_bytes)

  where ``relayed_bytes`` is the UTF-8 size of all generated text relayed (content, reasoning, refusal,
  tool-call names and arguments, completion ``text``) over all choices. The slack covers special tokens
  (end of sequence, think/tool tags stripped by parsers) and the JSON wrapper of parsed tool calls.
* **Prompt upper bound** (when the caller passes the request body size): the prompt is rendered from the
  request body, whose JSON is larger than its text; the chat template adds a few tokens per message and may
  add a default system prompt or tool instructions, hence ``prompt ≤ request_bytes + prompt_slack_tokens``.
  Pass ``request_bytes=None`` where the body does not bound the prompt (images by URL, server-side files).
* **Stream lower bound** (a hint, never billed): engines emit one delta per decoding step, so each non-empty
  content delta carries at least one token; a claim below ``non_empty_deltas − slack`` is *under*-reported.

A claim above a bound is **over-reported**: the billable usage is capped at the bound (the client never pays
for bytes it did not get) and the caller should tell the registry (``usage_mismatch``). A claim below the
hint is flagged but billed as claimed: we never bill estimates, only what the worker reported (capped).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocoon.proxy.pricing import TokenCounts

__all__ = ["DEFAULT_AUDIT_POLICY", "AuditPolicy", "AuditResult", "RelayTally", "UsageAudit"]

MAX_LINE_BYTES = 1 << 20  # an SSE line longer than this stops parsing (the raw-byte bound still holds)
MAX_JSON_BYTES = 16 << 20

# Text-bearing fields of an OpenAI chat message / delta (reasoning: vLLM/SGLang use both spellings).
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    completion_slack_tokens: int = 16
    completion_slack_ratio: float = 0.02
    tool_call_slack_tokens: int = 16
    prompt_slack_tokens: int = 256
    delta_slack: int = 2

    def __post_init__(self) -> None:
        for name in (
            "completion_slack_tokens",
            "tool_call_slack_tokens",
            "prompt_slack_tokens",
            "delta_slack",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int")
        if not 0 <= self.completion_slack_ratio < 1:
            raise ValueError("completion_slack_ratio must be in [0, 1)")


DEFAULT_AUDIT_POLICY = AuditPolicy()


def _text_bytes(value: object) -> int:
    """UTF-8 size of a text field that is a str or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        total = 0
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += len(part["text"].encode("utf-8", "surrogatepass"))
        return total
    return 0


class RelayTally:
    """What was relayed to the client: UTF-8 bytes of generated text, non-empty deltas, tool calls.

    Two ways to feed it:

    * raw answer bytes exactly as relayed, in any split (:meth:`feed`, then :meth:`finish`): an SSE stream
      (``data: {...}`` lines, ``[DONE]``) or a JSON / NDJSON body, told apart by the first non-blank byte;
    * already decoded objects: every SSE chunk (:meth:`add_chunk`) or the whole JSON answer
      (:meth:`add_response`).

    Any shape is tolerated (fields that are missing or of the wrong type count as nothing). Buffers are
    capped; past a cap the tally stops parsing and the bound falls back to the raw bytes relayed, which are
    always at least the text they carry (JSON only adds quoting and escapes).
    """

    __slots__ = ("_buf", "_mode", "_overflow", "chunks", "deltas", "raw_bytes", "text_bytes", "tool_calls")

    def __init__(self) -> None:
        self.text_bytes = 0
        self.deltas = 0  # non-empty deltas (per choice) seen in a stream
        self.chunks = 0
        self.tool_calls = 0
        self.raw_bytes = 0
        self._buf = bytearray()
        self._mode: str | None = None  # "sse" | "json" once the first byte is seen
        self._overflow = False

    @classmethod
    def from_counts(cls, *, text_bytes: int, deltas: int = 0, tool_calls: int = 0) -> RelayTally:
        """A tally from numbers counted elsewhere. ``text_bytes`` must be UTF-8 *bytes*, not characters."""
        t = cls()
        t.text_bytes, t.deltas, t.tool_calls = max(text_bytes, 0), max(deltas, 0), max(tool_calls, 0)
        return t

    @property
    def overflowed(self) -> bool:
        return self._overflow

    @property
    def bound_bytes(self) -> int:
        """Bytes that bound the generated text: the parsed text, or all raw bytes if parsing gave up."""
        return max(self.text_bytes, self.raw_bytes) if self._overflow else self.text_bytes

    def feed(self, data: bytes) -> None:
        """Raw answer bytes as relayed to the client (any split)."""
        self.raw_bytes += len(data)
        if self._overflow or not data:
            return
        self._buf += data
        if self._mode is None:
            head = bytes(self._buf).lstrip()
            if not head:
                self._buf.clear()
                return
            self._mode = "json" if head[:1] in (b"{", b"[") else "sse"
        if self._mode == "sse":
            self._sse_lines(final=False)
        elif len(self._buf) > MAX_JSON_BYTES:
            self._give_up()

    def finish(self) -> None:
        """End of the answer: parse what is still buffered."""
        if self._overflow:
            return
        if self._mode == "sse":
            self._sse_lines(final=True)
        elif self._mode == "json":
            raw = bytes(self._buf)
            self._buf.clear()
            try:
                self._value(json.loads(raw), streamed=False)
            except ValueError:
                for line in raw.splitlines():  # NDJSON: one object per line
                    with contextlib.suppress(ValueError):
                        self._value(json.loads(line), streamed=False)

    def _give_up(self) -> None:
        self._overflow = True
        self._buf.clear()

    def _sse_lines(self, *, final: bool) -> None:
        lines = bytes(self._buf).split(b"\n")
        rest = b"" if final else lines.pop()
        self._buf = bytearray(rest)
        if len(rest) > MAX_LINE_BYTES:
            self._give_up()
            return
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == b"[DONE]":
                continue
            with contextlib.suppress(ValueError):
                self._value(json.loads(payload), streamed=True)

    def _value(self, value: object, *, streamed: bool) -> None:
        if not isinstance(value, Mapping):
            return
        if streamed:
            self.add_chunk(value)
        else:
            # A JSON body holds messages; NDJSON lines may hold messages or deltas.
            self.chunks += 1
            self._choices(value, ("message", "delta"), streamed=False)

    def add_text(self, text: str) -> None:
        self.text_bytes += _text_bytes(text)

    def _message(self, msg: Mapping[str, Any], *, streamed: bool) -> int:
        n = sum(_text_bytes(msg.get(f)) for f in _TEXT_FIELDS)
        calls = msg.get("tool_calls")
        if isinstance(calls, Sequence) and not isinstance(calls, str | bytes | bytearray):
            for call in calls:
                if not isinstance(call, Mapping):
                    continue
                fn = call.get("function")
                if isinstance(fn, Mapping):
                    n += _text_bytes(fn.get("name")) + _text_bytes(fn.get("arguments"))
                # A stream announces a call once (with its id) and then streams its arguments.
                if not streamed or call.get("id"):
                    self.tool_calls += 1
        return n

    def _choices(self, body: Mapping[str, Any], keys: tuple[str, ...], *, streamed: bool) -> None:
        choices = body.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str | bytes | bytearray):
            return
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            n = _text_bytes(choice.get("text"))  # legacy completions API
            for key in keys:
                msg = choice.get(key)
                if isinstance(msg, Mapping):
                    n += self._message(msg, streamed=streamed)
            self.text_bytes += n
            if streamed and n > 0:
                self.deltas += 1

    def add_chunk(self, chunk: Mapping[str, Any]) -> None:
        """One streamed ``chat.completion.chunk`` (or ``text_completion`` chunk), already JSON-decoded."""
        if not isinstance(chunk, Mapping):
            return
        self.chunks += 1
        self._choices(chunk, ("delta",), streamed=True)

    def add_response(self, body: Mapping[str, Any]) -> None:
        """A whole non-streamed ``chat.completion`` / ``text_completion`` answer, already JSON-decoded."""
        if isinstance(body, Mapping):
            self._choices(body, ("message",), streamed=False)


@dataclass(frozen=True, slots=True)
class AuditResult:
    claimed: TokenCounts
    billable: TokenCounts
    over_reported: bool  # the claim exceeds what was relayed: cap applied, tell the registry
    under_reported: bool  # the claim is below the stream's delta count: suspicious, billed as claimed
    completion_bound: int
    prompt_bound: int | None
    reasons: tuple[str, ...]


class UsageAudit:
    """Decides whether a usage claim is plausible for what was relayed, and what is billable."""

    def __init__(self, policy: AuditPolicy = DEFAULT_AUDIT_POLICY) -> None:
        self._policy = policy

    @property
    def policy(self) -> AuditPolicy:
        return self._policy

    def completion_bound(self, relayed: RelayTally) -> int:
        p = self._policy
        return (
            relayed.bound_bytes
            + p.completion_slack_tokens
            + p.tool_call_slack_tokens * relayed.tool_calls
            + math.ceil(p.completion_slack_ratio * relayed.bound_bytes)
        )

    def check(self, claimed: TokenCounts, relayed: RelayTally, *, request_bytes: int | None) -> AuditResult:
        """Audit one finished (or cut-off) answer; ``request_bytes`` = size of the request body, if it bounds the prompt."""
        p = self._policy
        reasons: list[str] = []
        over = under = False
        c_bound = self.completion_bound(relayed)
        completion, reasoning = claimed.completion, claimed.reasoning
        if completion > c_bound:
            over = True
            reasons.append(
                f"completion {completion} > bound {c_bound} for {relayed.bound_bytes} relayed bytes"
            )
            completion = c_bound
            reasoning = min(reasoning, completion)
        if relayed.deltas - p.delta_slack > claimed.completion:
            under = True
            reasons.append(f"completion {claimed.completion} < {relayed.deltas} non-empty deltas relayed")
        prompt, cached = claimed.prompt, claimed.cached
        p_bound: int | None = None
        if request_bytes is not None:
            p_bound = max(request_bytes, 0) + p.prompt_slack_tokens
            if prompt > p_bound:
                over = True
                reasons.append(f"prompt {prompt} > bound {p_bound} for a {request_bytes}-byte request")
                prompt = p_bound
                cached = min(cached, prompt)
        billable = TokenCounts(prompt=prompt, cached=cached, completion=completion, reasoning=reasoning)
        return AuditResult(
            claimed=claimed,
            billable=billable,
            over_reported=over,
            under_reported=under,
            completion_bound=c_bound,
            prompt_bound=p_bound,
            reasons=tuple(reasons),
        )
