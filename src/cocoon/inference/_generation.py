"""The token loop of the embedded engine. It runs in the engine's single worker thread (a llama
context is not thread-safe) and reports through a callback, so it never touches asyncio."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cocoon.oai import Usage

__all__ = [
    "ChoiceDone",
    "Failed",
    "Finished",
    "GenerationJob",
    "LazyGrammar",
    "StopScanner",
    "TextDelta",
    "TokenLogprob",
    "TokenModel",
    "run_generation",
]


class StopScanner:
    """Cuts generated text at the first stop sequence to complete, holding back any tail that could
    still grow into one, so text that belongs to a stop sequence is never emitted."""

    def __init__(self, stops: Sequence[str]) -> None:
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        self._stops = tuple(stops)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add generated text; return the part that is safe to emit now."""
        if self.stopped:
            return ""
        buf = self._held + text
        # The stop that completes first wins (what token-by-token generation would see), so the
        # result does not depend on how the text was split; ties go to the one starting earlier.
        hits = [(i + len(s), i) for s in self._stops if (i := buf.find(s)) >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buf[: min(hits)[1]]
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:k]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """Generation ended without a stop sequence: release what was held back."""
        out, self._held = self._held, ""
        return "" if self.stopped else out


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log-probability and its most likely alternatives (token, bytes, lp)."""

    token: str
    raw: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ChoiceDone:
    index: int
    finish_reason: str  # "stop" | "length"


@dataclass(frozen=True, slots=True)
class Finished:
    usage: Usage
    cancelled: bool


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Event = TextDelta | ChoiceDone | Finished | Failed


class TokenModel(Protocol):
    """The part of ``llama_cpp.Llama`` the loop uses (a fake can stand in for it)."""

    n_tokens: int

    def n_ctx(self) -> int: ...
    def set_seed(self, seed: int) -> None: ...
    def detokenize(
        self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False
    ) -> bytes: ...
    def generate(self, tokens: Sequence[int], **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LazyGrammar:
    """Free text until the answer opens with ``trigger``; then decoding restarts after the trigger's
    tokens under ``grammar`` (how ``tool_choice: auto`` keeps calls well-formed)."""

    trigger: str
    trigger_tokens: tuple[int, ...]
    grammar: Any  # llama_cpp.LlamaGrammar


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationJob:
    prompt_tokens: tuple[int, ...]
    max_tokens: int
    n: int
    seed: int
    stops: tuple[str, ...]
    sampling: dict[str, Any]  # keyword arguments for Llama.generate
    echo_text: str | None
    cancel: threading.Event
    ignore_eos: bool = False
    grammar: Any = None  # llama_cpp.LlamaGrammar constraining every token
    lazy_grammar: LazyGrammar | None = None
    top_logprobs: int | None = None  # None: no logprobs
    read_logits: Callable[[], Any] | None = None  # the logits that produced the last token


def _cached_prefix(model: TokenModel, tokens: Sequence[int]) -> int:
    # llama-cpp-python reuses the KV state of the longest common prefix with the previous request,
    # re-evaluating at least the last prompt token; those reused tokens are the "cached" ones.
    previous = getattr(model, "input_ids", None)
    if previous is None or not tokens:
        return 0
    common = 0
    for a, b in zip(previous[: model.n_tokens], tokens, strict=False):
        if int(a) != b:
            break
        common += 1
    return min(common, len(tokens) - 1)


def run_generation(
    model: TokenModel, end_tokens: frozenset[int], job: GenerationJob, emit: Callable[[Event], None]
) -> Finished | Failed:
    """Generate ``job.n`` choices one after another, emitting events; checks ``job.cancel`` between
    tokens. Always ends by emitting (and returning) ``Finished`` or ``Failed``."""
    final: Finished | Failed
    try:
        prompt = list(job.prompt_tokens)
        cached = _cached_prefix(model, prompt)
        n_ctx = model.n_ctx()
        completion = 0
        for index in range(job.n):
            if job.cancel.is_set():
                break
            if job.echo_text:
                emit(TextDelta(index, job.echo_text))
            count, reason = _one_choice(model, end_tokens, job, index, prompt, n_ctx, emit)
            completion += count
            if reason is None:  # cancelled
                break
            emit(ChoiceDone(index, reason))
        usage = Usage(prompt_tokens=len(prompt), cached_tokens=cached, completion_tokens=completion)
        final = Finished(usage, cancelled=job.cancel.is_set())
    except Exception as exc:  # reported to the awaiting side, which maps it to a 500 / error chunk
        final = Failed(exc)
    emit(final)
    return final


class _ChoiceText:
    """Turns one choice's tokens into emitted text: UTF-8 reassembly, stop sequences, logprobs
    carried with the text they belong to, and the hold-back while a lazy trigger is undecided."""

    def __init__(self, job: GenerationJob, index: int, emit: Callable[[Event], None]) -> None:
        self._index, self._emit = index, emit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.scanner = StopScanner(job.stops)
        self._trigger = job.lazy_grammar.trigger if job.lazy_grammar else None
        self._held = ""
        self._logprobs: list[TokenLogprob] = []
        self.triggered = False

    def push(self, raw: bytes, logprob: TokenLogprob | None) -> None:
        if logprob is not None:
            self._logprobs.append(logprob)
        text = self._decoder.decode(raw)
        if self._trigger is not None:
            self._held += text
            head = self._held.lstrip()
            if head.startswith(self._trigger):
                self.triggered = True
                return
            if self._trigger.startswith(head):
                return
            self._trigger, text, self._held = None, self._held, ""
        self._send(self.scanner.push(text))

    def take_trigger(self) -> None:
        """The answer is a call: emit the trigger; what decoding made beyond it is redone."""
        assert self._trigger is not None
        trigger, self._trigger, self._held = self._trigger, None, ""
        self.triggered = False
        self._logprobs.clear()
        self._decoder.reset()
        self._send(self.scanner.push(trigger))

    def finish(self) -> None:
        held, self._held = self._held, ""
        self._send(self.scanner.push(held + self._decoder.decode(b"", final=True)) + self.scanner.flush())

    def _send(self, text: str) -> None:
        if text or (self._logprobs and not self.scanner.stopped):
            self._emit(TextDelta(self._index, text, tuple(self._logprobs)))
            self._logprobs.clear()


def _logprob(model: TokenModel, job: GenerationJob, token: int) -> TokenLogprob | None:
    if job.top_logprobs is None or job.read_logits is None:
        return None
    import numpy as np  # llama_cpp's own dependency; only needed when logprobs are asked for

    logits = np.asarray(job.read_logits(), dtype=np.float64)
    shifted = logits - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())

    def named(t: int) -> tuple[str, bytes, float]:
        raw = model.detokenize([t], special=False)
        return raw.decode("utf-8", "replace"), raw, float(logprobs[t])

    top: tuple[tuple[str, bytes, float], ...] = ()
    if job.top_logprobs:
        best = np.argpartition(-logprobs, job.top_logprobs)[: job.top_logprobs]
        top = tuple(named(int(t)) for t in sorted(best, key=lambda t: -logprobs[t]))
    token_text, raw, value = named(token)
    return TokenLogprob(token=token_text, raw=raw, logprob=value, top=top)


_SWITCH = "switch"  # the lazy trigger appeared: restart under its grammar


def _decode(
    model: TokenModel,
    end_tokens: frozenset[int],
    job: GenerationJob,
    prompt: list[int],
    grammar: Any,
    out: _ChoiceText,
    limit: int,
) -> tuple[int, str | None]:
    """Run one ``generate`` until end, stop, limit, cancel (reason None) or a lazy trigger."""
    count = 0
    reason: str | None = "length"
    tokens = (
        model.generate(prompt, grammar=grammar, **job.sampling)
        if grammar is not None
        else (model.generate(prompt, **job.sampling))
    )
    try:
        for token in tokens:
            if job.cancel.is_set():
                return count, None
            count += 1
            if token in end_tokens and not job.ignore_eos:
                return count, "stop"
            out.push(model.detokenize([token]), _logprob(model, job, token))
            if out.scanner.stopped:
                return count, "stop"
            if out.triggered:
                return count, _SWITCH
            if count >= limit:
                break
    finally:
        tokens.close()
    return count, reason


def _one_choice(
    model: TokenModel,
    end_tokens: frozenset[int],
    job: GenerationJob,
    index: int,
    prompt: list[int],
    n_ctx: int,
    emit: Callable[[Event], None],
) -> tuple[int, str | None]:
    limit = min(job.max_tokens, n_ctx - len(prompt))
    if limit <= 0:
        return 0, "length"
    model.set_seed(job.seed + index)
    out = _ChoiceText(job, index, emit)
    count, reason = _decode(model, end_tokens, job, prompt, job.grammar, out, limit)
    if reason == _SWITCH and job.lazy_grammar is not None:
        out.take_trigger()
        constrained = prompt + list(job.lazy_grammar.trigger_tokens)
        room = min(limit - count, n_ctx - len(constrained))
        more, reason = (
            (0, "length")
            if room <= 0
            else (_decode(model, end_tokens, job, constrained, job.lazy_grammar.grammar, out, room))
        )
        count += more
    if reason is None:
        return count, None
    out.finish()
    return count, reason
