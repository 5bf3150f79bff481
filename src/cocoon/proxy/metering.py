"""Cross-check a worker's reported usage against what the proxy actually relayed to the client.

The worker reports usage in four classes (prompt ⊇ cached, completion ⊇ reasoning). The proxy sees every byte
it relays, and a few facts bound honest counts:

* **Completion, by the model's tokenizer** (where the proxy has the model's tokenizer, :class:`Tokenizer`):
  an engine's completion count is the length of the token sequence that decodes to the relayed text, which
  in practice is the tokenizer's own encoding of that text (measured: 1 526 of 1 526 sampled SmolLM2 tokens
  at temperature 0.7 and 1.2). So ``completion ≤ Σ tokens(text of each choice and field) × (1 + ratio) +
  slack``; the slack covers end-of-sequence and think/tool tags that parsers strip.
* **Completion, by bytes** (no tokenizer): every generated token decodes to at least one byte, but real text
  packs several: a common English word (:mod:`cocoon.proxy.metering_words`) is one token in every mainstream
  vocabulary, any other ASCII letter costs at most ``letter_weight`` tokens, a space ``space_weight``,
  anything else one token per byte (:func:`estimate_tokens`). Measured on SmolLM2's BPE with random strings
  (the worst honest case): lowercase 0.60, mixed case 0.73, base64 0.81, hex 0.90, digits 1.0 tokens per
  byte; English prose ≈ 0.22, which this estimate bounds at ≈ 2.5× (bytes alone: ≈ 4.5×).
* **Prompt**: the prompt is rendered from the request body, whose JSON is at least its text; the chat template
  adds a few tokens per message and may add a default system prompt or tool instructions, hence ``prompt ≤
  tokens(body) + slack`` (tokenizer), ``≤ estimate(body) + slack`` (body, no tokenizer) or ``≤ body bytes +
  slack`` (size only). Pass no body where it does not bound the prompt (images by URL, server-side files).
* **max_tokens**: a completion longer than the request allowed is capped at it.
* **Stream lower bound** (a hint, never billed): each non-empty content delta carries at least one token.

A claim above a bound is **over-reported**: the billable usage is capped at the bound (the client never pays
for text it did not get); the caller tells the registry (``usage_mismatch``) and keeps the evidence
(:attr:`AuditResult.raw_sha256` and friends, stored by the ledger). A claim below the hint is flagged but billed
as claimed: we never bill estimates, only what the worker reported (capped).

The relay tally never lets junk widen a bound: an SSE line longer than :data:`MAX_LINE_BYTES` (or a JSON body
over :data:`MAX_JSON_BYTES`) is a protocol violation by the upstream (:attr:`RelayTally.protocol_violation`);
its bytes count as no text at all, and the bound stays what the well-formed events carried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from cocoon.core.native import bundled_model
from cocoon.oai import SseDecoder, SseEvent, SseLineTooLong
from cocoon.proxy.metering_words import COMMON_WORDS
from cocoon.proxy.pricing import TokenCounts

__all__ = [
    "DEFAULT_AUDIT_POLICY",
    "MAX_EVIDENCE_TEXT",
    "AuditPolicy",
    "AuditResult",
    "GgufTokenizer",
    "RelayTally",
    "Tokenizer",
    "TokenizerRegistry",
    "UsageAudit",
    "estimate_tokens",
]

MAX_LINE_BYTES = 1 << 20  # an SSE line longer than this is a protocol violation (its bytes count as nothing)
MAX_JSON_BYTES = 16 << 20
MAX_KEPT_TEXT = 1 << 20  # text kept for the tokenizer (per answer); bytes beyond it count one token each
MAX_EVIDENCE_TEXT = 64 << 10  # text kept as evidence of a capped answer

# Text-bearing fields of an OpenAI chat message / delta (reasoning: vLLM/SGLang use both spellings).
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    completion_slack_tokens: int = 16
    completion_slack_ratio: float = 0.02
    tool_call_slack_tokens: int = 16
    prompt_slack_tokens: int = 256  # by bytes or estimate: default system prompt, template tokens
    tokenizer_prompt_slack_tokens: int = 64  # by tokenizer: chat template and a default system prompt
    tokenizer_slack_ratio: float = 0.05  # an engine may emit a non-canonical encoding now and then
    letter_weight: float = 0.85  # most tokens one ASCII letter can cost (random mixed case measures 0.73)
    space_weight: float = 0.5  # a space mostly joins the word after it
    delta_slack: int = 2

    def __post_init__(self) -> None:
        for name in (
            "completion_slack_tokens",
            "tool_call_slack_tokens",
            "prompt_slack_tokens",
            "tokenizer_prompt_slack_tokens",
            "delta_slack",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int")
        for name in ("completion_slack_ratio", "tokenizer_slack_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        for name in ("letter_weight", "space_weight"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")


DEFAULT_AUDIT_POLICY = AuditPolicy()


# Pre-tokens as BPE tokenizers split text (tokens never cross them): a word, a number, other symbols, spaces.
_PIECES = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")


def estimate_tokens(text: str, policy: AuditPolicy = DEFAULT_AUDIT_POLICY) -> int:
    """Most tokens an honest BPE tokenizer spends on ``text`` (see the module docstring).

    A common English word (:data:`~cocoon.proxy.metering_words.COMMON_WORDS`) costs one token, two when
    capitalised; any other ASCII letter ``letter_weight``, a space ``space_weight``, any other byte one.
    """
    total = 0.0
    for match in _PIECES.finditer(text):
        piece = match.group()
        word = piece.lstrip(" ")
        space = policy.space_weight * (len(piece) - len(word))
        if not word:
            total += space
        elif word.isascii() and word.isalpha():
            if word in COMMON_WORDS:
                total += 1
            elif word.lower() in COMMON_WORDS and word[1:].islower():
                total += 2
            else:
                total += policy.letter_weight * len(word) + space
        elif word.isspace():
            total += space + len(word.encode("utf-8", "surrogatepass"))
        else:
            total += len(word.encode("utf-8", "surrogatepass")) + space
    return math.ceil(total)


# ---------------------------------------------------------------- tokenizers


class Tokenizer(Protocol):
    """A model's tokenizer, as far as the audit needs it."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int:
        """Tokens the model's tokenizer produces for ``text`` (no BOS, special tokens as plain text)."""
        ...


class GgufTokenizer:
    """The tokenizer of a GGUF model, loaded vocabulary-only by llama-cpp-python (≈ 0.1 s, no weights)."""

    def __init__(self, path: Path, name: str) -> None:
        import llama_cpp  # optional dependency: only where a GGUF tokenizer is used
        from llama_cpp._utils import suppress_stdout_stderr

        self._name = name
        # llama.cpp prints context warnings to the process's stderr even with verbose=False.
        with suppress_stdout_stderr(disable=False):
            self._llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self._lock = threading.Lock()  # llama.cpp's tokenizer is not documented as thread-safe

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        if not data:
            return 0
        with self._lock:
            return len(self._llm.tokenize(data, add_bos=False, special=False))


class TokenizerRegistry:
    """Tokenizers by served model name, loaded on first use; a model without one is audited by bytes.

    :meth:`with_bundled` knows the bundled SmolLM2 GGUF under the name the embedded engine serves it as.
    """

    def __init__(self, paths: Mapping[str, Path] | None = None) -> None:
        self._paths = dict(paths or {})
        self._loaded: dict[str, Tokenizer | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def with_bundled(cls) -> TokenizerRegistry:
        path = bundled_model()
        # The embedded engine names a model after its file, up to the first dot.
        return cls({} if path is None else {path.name.split(".", 1)[0]: path})

    def add(self, model: str, tokenizer: Tokenizer) -> None:
        with self._lock:
            self._loaded[model] = tokenizer

    def get(self, model: str) -> Tokenizer | None:
        with self._lock:
            if model not in self._loaded:
                path = self._paths.get(model)
                self._loaded[model] = None
                if path is not None:
                    with contextlib.suppress(Exception):  # no llama-cpp, a bad file: audit by bytes
                        self._loaded[model] = GgufTokenizer(path, name=path.name)
            return self._loaded[model]


# ---------------------------------------------------------------- what was relayed


def _texts(value: object) -> list[str]:
    """The text of a field that is a str or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [p["text"] for p in value if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
    return []


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)  # ABC checks are slow: JSON gives dicts


def _is_list(value: object) -> TypeGuard[Sequence[Any]]:
    if type(value) is list:
        return True
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


_JSON = json.JSONDecoder()


def _event_json(data: bytes) -> object:
    """``json.loads(data)``, sooner for the usual event: an object opening with a key is UTF-8 to ``loads``."""
    if data[:2] == b'{"':
        return _JSON.decode(data.decode("utf-8", "surrogatepass"))
    return json.loads(data)


def _line_end(data: bytes, start: int) -> int:
    """Index of the first line terminator (LF or CR) at or after ``start``, or -1."""
    ends = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
    return min(ends) if ends else -1


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class _Texts:
    """Generated text per (choice, field), kept up to a cap for the tokenizer."""

    parts: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    kept: int = 0
    dropped: int = 0  # UTF-8 bytes beyond the cap

    def add(self, key: tuple[int, str], text: str, size: int) -> None:
        if self.kept + size > MAX_KEPT_TEXT:
            self.dropped += size
            return
        self.kept += size
        self.parts.setdefault(key, []).append(text)

    def joined(self) -> list[str]:
        return ["".join(p) for p in self.parts.values()]


class RelayTally:
    """What was relayed to the client: generated text (bytes, and the text itself up to a cap), non-empty deltas,
    tool calls, and a digest of every raw byte.

    Two ways to feed it:

    * raw answer bytes exactly as relayed, in any split (:meth:`feed`, then :meth:`finish`): an SSE stream
      (``data: {...}`` lines, ``[DONE]``) or a JSON / NDJSON body, told apart by the first non-blank byte;
    * already decoded objects: every SSE chunk (:meth:`add_chunk`) or the whole JSON answer
      (:meth:`add_response`).

    Any shape is tolerated (fields that are missing or of the wrong type count as nothing).
    """

    __slots__ = (
        "_buf",
        "_digest",
        "_line_bytes",
        "_mode",
        "_skip_line",
        "_sse",
        "_stopped",
        "_texts",
        "chunks",
        "deltas",
        "protocol_violation",
        "raw_bytes",
        "text_bytes",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.text_bytes = 0
        self.deltas = 0  # non-empty deltas (per choice) seen in a stream
        self.chunks = 0
        self.tool_calls = 0
        self.raw_bytes = 0
        self.protocol_violation = False  # an over-long line or body: the upstream broke the protocol
        self._buf = bytearray()
        self._mode: str | None = None  # "sse" | "json" once the first byte is seen
        self._skip_line = False  # inside an over-long SSE line: drop bytes up to its end
        self._stopped = False  # a JSON body over its cap: nothing more is parsed
        self._digest = hashlib.sha256()
        self._texts = _Texts()
        self._sse = SseDecoder(max_line_bytes=MAX_LINE_BYTES)
        self._line_bytes = 0  # bytes of the SSE line being fed so far

    @classmethod
    def from_counts(cls, *, text_bytes: int, deltas: int = 0, tool_calls: int = 0) -> RelayTally:
        """A tally from numbers counted elsewhere. ``text_bytes`` must be UTF-8 *bytes*, not characters."""
        t = cls()
        t.text_bytes, t.deltas, t.tool_calls = max(text_bytes, 0), max(deltas, 0), max(tool_calls, 0)
        t._texts.dropped = t.text_bytes  # no text to tokenize: the byte bound applies
        return t

    @property
    def bound_bytes(self) -> int:
        """UTF-8 bytes of generated text relayed; junk (over-long lines) never counts."""
        return self.text_bytes

    @property
    def raw_sha256(self) -> str:
        return self._digest.hexdigest()

    def texts(self) -> list[str]:
        """The kept text, one string per choice and field (reasoning, content, tool calls)."""
        return self._texts.joined()

    @property
    def untokenized_bytes(self) -> int:
        """Text bytes not kept for the tokenizer (past the cap, or counted elsewhere)."""
        return self._texts.dropped

    def excerpt(self) -> str:
        """The relayed text for evidence: the kept text joined, cut at :data:`MAX_EVIDENCE_TEXT` bytes."""
        joined = "\n".join(self.texts()).encode("utf-8", "surrogatepass")
        return joined[:MAX_EVIDENCE_TEXT].decode("utf-8", "ignore")

    def feed(self, data: bytes) -> None:
        """Raw answer bytes as relayed to the client (any split)."""
        self.raw_bytes += len(data)
        self._digest.update(data)
        if self._stopped or not data:
            return
        if self._mode is None:
            head = (bytes(self._buf) + data).lstrip()
            if not head:
                return
            self._mode = "json" if head[:1] in (b"{", b"[") else "sse"
        if self._mode == "sse":
            self._feed_sse(data)
            return
        self._buf += data
        if len(self._buf) > MAX_JSON_BYTES:
            self.protocol_violation = self._stopped = True
            self._buf.clear()

    def _feed_sse(self, data: bytes) -> None:
        size = len(data)
        fits = self._line_bytes + size <= MAX_LINE_BYTES + 2 and self._sse.buffered + size <= MAX_LINE_BYTES
        if fits and not self._skip_line:
            # No line or event of this chunk can reach the limit, so the decoder cannot raise: one feed
            # (whose fast path splits a run of simple events at once) does what the line loop would do.
            last = data.rfind(b"\n")
            self._line_bytes = self._line_bytes + size if last < 0 else size - last - 1
            self._events(self._sse.feed(data))
            return
        self._feed_sse_lines(data)

    def _feed_sse_lines(self, data: bytes) -> None:
        # Fed line by line, so that an over-long line loses only itself, never the events before it.
        pos = 0
        while pos < len(data):
            if self._skip_line:  # the rest of an over-long line: dropped up to its end
                end = _line_end(data, pos)
                if end < 0:
                    return
                pos, self._skip_line = end + 1, False
                continue
            nl = data.find(b"\n", pos)
            piece = data[pos:] if nl < 0 else data[pos : nl + 1]
            pos += len(piece)
            line = self._line_bytes + len(piece)
            self._line_bytes = 0 if nl >= 0 else line
            try:
                if line > MAX_LINE_BYTES + 2:  # + its CR LF
                    # Counted here too: the decoder skips a long comment line that ends within one feed.
                    raise SseLineTooLong(f"SSE line longer than {MAX_LINE_BYTES} bytes")
                events = self._sse.feed(piece)
            except SseLineTooLong:
                self.protocol_violation = True
                self._skip_line = nl < 0
                self._sse = SseDecoder(max_line_bytes=MAX_LINE_BYTES)
                self._line_bytes = 0
                continue
            self._events(events)

    def finish(self) -> None:
        """End of the answer: parse what is still buffered."""
        if self._stopped:
            return
        if self._mode == "sse":
            if not self._skip_line:
                self._events(self._sse.finish())
            return
        raw = bytes(self._buf)
        self._buf.clear()
        if self._mode == "json":
            try:
                self._value(json.loads(raw), streamed=False)
            except ValueError:
                for line in raw.splitlines():  # NDJSON: one object per line
                    with contextlib.suppress(ValueError):
                        self._value(json.loads(line), streamed=False)

    def _events(self, events: list[SseEvent]) -> None:
        for event in events:
            if event.is_done:
                continue
            with contextlib.suppress(ValueError):
                self._value(_event_json(event.data), streamed=True)

    def _value(self, value: object, *, streamed: bool) -> None:
        if not _is_mapping(value):
            return
        if streamed:
            self.add_chunk(value)
        else:
            # A JSON body holds messages; NDJSON lines may hold messages or deltas.
            self.chunks += 1
            self._choices(value, ("message", "delta"), streamed=False)

    def add_text(self, text: str, *, choice: int = 0) -> None:
        self._text((choice, "content"), text)

    def _text(self, key: tuple[int, str], text: str) -> int:
        size = _utf8(text)
        self.text_bytes += size
        self._texts.add(key, text, size)
        return size

    def _message(self, index: int, msg: Mapping[str, Any], *, streamed: bool) -> int:
        n = 0
        for f in _TEXT_FIELDS:
            value = msg.get(f)
            if type(value) is str:  # the common delta: skip the list machinery of _texts
                n += self._text((index, f), value)
            elif value is not None:
                n += sum(self._text((index, f), t) for t in _texts(value))
        calls = msg.get("tool_calls")
        if calls is not None and _is_list(calls):
            for call in calls:
                if not _is_mapping(call):
                    continue
                fn = call.get("function")
                if _is_mapping(fn):
                    for part in ("name", "arguments"):
                        n += sum(self._text((index, f"tool.{part}"), t) for t in _texts(fn.get(part)))
                # A stream announces a call once (with its id) and then streams its arguments.
                if not streamed or call.get("id"):
                    self.tool_calls += 1
        return n

    def _choices(self, body: Mapping[str, Any], keys: tuple[str, ...], *, streamed: bool) -> None:
        choices = body.get("choices")
        if not _is_list(choices):
            return
        for position, choice in enumerate(choices):
            if not _is_mapping(choice):
                continue
            index = choice.get("index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            legacy = choice.get("text")  # legacy completions
            n = 0 if legacy is None else sum(self._text((index, "text"), t) for t in _texts(legacy))
            for key in keys:
                msg = choice.get(key)
                if msg is not None and _is_mapping(msg):
                    n += self._message(index, msg, streamed=streamed)
            if streamed and n > 0:
                self.deltas += 1

    def add_chunk(self, chunk: Mapping[str, Any]) -> None:
        """One streamed ``chat.completion.chunk`` (or ``text_completion`` chunk), already JSON-decoded."""
        if not _is_mapping(chunk):
            return
        self.chunks += 1
        self._choices(chunk, ("delta",), streamed=True)

    def add_response(self, body: Mapping[str, Any]) -> None:
        """A whole non-streamed ``chat.completion`` / ``text_completion`` answer, already JSON-decoded."""
        if isinstance(body, Mapping):
            self._choices(body, ("message",), streamed=False)


# ---------------------------------------------------------------- the audit


@dataclass(frozen=True, slots=True)
class AuditResult:
    claimed: TokenCounts
    billable: TokenCounts
    over_reported: bool  # the claim exceeds what was relayed: cap applied, tell the registry
    under_reported: bool  # the claim is below the stream's delta count: suspicious, billed as claimed
    completion_bound: int
    prompt_bound: int | None
    reasons: tuple[str, ...]
    basis: str = "bytes"  # "tokenizer:<name>" when the model's tokenizer bounded the counts
    text_bytes: int = 0  # evidence: what was relayed
    raw_bytes: int = 0
    raw_sha256: str = ""
    text_excerpt: str = ""


class UsageAudit:
    """Decides whether a usage claim is plausible for what was relayed, and what is billable.

    ``tokenizers`` (default: the bundled SmolLM2 under its served name) supplies the tokenizer for
    ``check(..., model=...)``; tokenizing costs about 1 ms per KB of text, so audit long answers off the
    event loop.
    """

    def __init__(
        self, policy: AuditPolicy = DEFAULT_AUDIT_POLICY, *, tokenizers: TokenizerRegistry | None = None
    ) -> None:
        self._policy = policy
        self._tokenizers = TokenizerRegistry.with_bundled() if tokenizers is None else tokenizers

    @property
    def tokenizers(self) -> TokenizerRegistry:
        return self._tokenizers

    @property
    def policy(self) -> AuditPolicy:
        return self._policy

    def completion_bound(self, relayed: RelayTally, tokenizer: Tokenizer | None = None) -> int:
        p = self._policy
        slack = p.completion_slack_tokens + p.tool_call_slack_tokens * relayed.tool_calls
        by_bytes = math.ceil(self._text_estimate(relayed) * (1 + p.completion_slack_ratio)) + slack
        if tokenizer is None:
            return by_bytes
        texts = relayed.texts()
        counted = sum(tokenizer.count(t) for t in texts) + len(texts)  # + a merge lost at each boundary
        by_tokens = math.ceil(counted * (1 + p.tokenizer_slack_ratio)) + relayed.untokenized_bytes + slack
        return min(by_tokens, by_bytes)

    def _text_estimate(self, relayed: RelayTally) -> int:
        kept = sum(estimate_tokens(t, self._policy) for t in relayed.texts())
        return kept + relayed.untokenized_bytes

    def prompt_bound(
        self, *, request_bytes: int | None, request_body: bytes | None, tokenizer: Tokenizer | None
    ) -> int | None:
        p = self._policy
        if request_body is not None:
            if tokenizer is not None:
                text = request_body.decode("utf-8", "replace")
                return tokenizer.count(text) + p.tokenizer_prompt_slack_tokens
            return estimate_tokens(request_body.decode("utf-8", "replace"), p) + p.prompt_slack_tokens
        if request_bytes is not None:
            return max(request_bytes, 0) + p.prompt_slack_tokens
        return None

    def check(
        self,
        claimed: TokenCounts,
        relayed: RelayTally,
        *,
        request_bytes: int | None = None,
        request_body: bytes | None = None,
        max_tokens: int | None = None,
        model: str | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> AuditResult:
        """Audit one finished (or cut-off) answer.

        ``request_body`` (or only its size, ``request_bytes``) bounds the prompt when the prompt is rendered
        from it; ``max_tokens`` is the request's completion limit; ``model`` names the served model, whose
        tokenizer (if :attr:`tokenizers` has it, or ``tokenizer`` given directly) bounds the counts.
        """
        if tokenizer is None and model is not None:
            tokenizer = self._tokenizers.get(model)
        reasons: list[str] = []
        c_bound = self.completion_bound(relayed, tokenizer)
        if max_tokens is not None and max_tokens >= 0:
            c_bound = min(c_bound, max_tokens)  # engines count an end-of-sequence token within max_tokens
        completion, reasoning = claimed.completion, claimed.reasoning
        if completion > c_bound:
            reasons.append(
                f"completion {completion} > bound {c_bound} for {relayed.bound_bytes} relayed bytes"
            )
            completion = c_bound
            reasoning = min(reasoning, completion)
        under = relayed.deltas - self._policy.delta_slack > claimed.completion
        if under:
            reasons.append(f"completion {claimed.completion} < {relayed.deltas} non-empty deltas relayed")
        prompt, cached = claimed.prompt, claimed.cached
        p_bound = self.prompt_bound(
            request_bytes=request_bytes, request_body=request_body, tokenizer=tokenizer
        )
        if p_bound is not None and prompt > p_bound:
            size = len(request_body) if request_body is not None else request_bytes
            reasons.append(f"prompt {prompt} > bound {p_bound} for a {size}-byte request")
            prompt = p_bound
            cached = min(cached, prompt)
        over = completion != claimed.completion or prompt != claimed.prompt
        return AuditResult(
            claimed=claimed,
            billable=TokenCounts(prompt=prompt, cached=cached, completion=completion, reasoning=reasoning),
            over_reported=over,
            under_reported=under,
            completion_bound=c_bound,
            prompt_bound=p_bound,
            reasons=tuple(reasons),
            basis="bytes" if tokenizer is None else f"tokenizer:{tokenizer.name}",
            text_bytes=relayed.text_bytes,
            raw_bytes=relayed.raw_bytes,
            raw_sha256=relayed.raw_sha256,
            text_excerpt=relayed.excerpt() if over else "",
        )
