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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocoon.proxy.pricing import TokenCounts

__all__ = ["DEFAULT_AUDIT_POLICY", "AuditPolicy", "AuditResult", "RelayTally", "UsageAudit"]

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

    Feed it every SSE chunk (:meth:`add_chunk`) or the whole non-streamed JSON answer (:meth:`add_response`);
    it tolerates any shape (fields that are missing or of the wrong type count as nothing).
    """

    __slots__ = ("chunks", "deltas", "text_bytes", "tool_calls")

    def __init__(self) -> None:
        self.text_bytes = 0
        self.deltas = 0  # non-empty deltas (per choice) seen in a stream
        self.chunks = 0
        self.tool_calls = 0

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

    def _choices(self, body: Mapping[str, Any], key: str, *, streamed: bool) -> None:
        choices = body.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str | bytes | bytearray):
            return
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            n = _text_bytes(choice.get("text"))  # legacy completions API
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
        self._choices(chunk, "delta", streamed=True)

    def add_response(self, body: Mapping[str, Any]) -> None:
        """A whole non-streamed ``chat.completion`` / ``text_completion`` answer, already JSON-decoded."""
        if isinstance(body, Mapping):
            self._choices(body, "message", streamed=False)


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
            relayed.text_bytes
            + p.completion_slack_tokens
            + p.tool_call_slack_tokens * relayed.tool_calls
            + math.ceil(p.completion_slack_ratio * relayed.text_bytes)
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
                f"completion {completion} > bound {c_bound} for {relayed.text_bytes} relayed bytes"
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
