"""The token loop of the embedded engine. It runs in the engine's single worker thread (a llama
context is not thread-safe) and reports through a callback, so it never touches asyncio."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cocoon.inference._usage import Usage

__all__ = [
    "ChoiceDone",
    "Failed",
    "Finished",
    "GenerationJob",
    "StopScanner",
    "TextDelta",
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
class TextDelta:
    index: int
    text: str


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
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    scanner = StopScanner(job.stops)
    count = 0
    reason: str | None = "length"
    tokens = model.generate(prompt, **job.sampling)
    try:
        for token in tokens:
            if job.cancel.is_set():
                return count, None
            count += 1
            if token in end_tokens and not job.ignore_eos:
                reason = "stop"
                break
            text = scanner.push(decoder.decode(model.detokenize([token])))
            if text:
                emit(TextDelta(index, text))
            if scanner.stopped:
                reason = "stop"
                break
            if count >= limit:
                break
    finally:
        tokens.close()
    tail = scanner.push(decoder.decode(b"", final=True)) + scanner.flush()
    if tail:
        emit(TextDelta(index, tail))
    return count, reason
