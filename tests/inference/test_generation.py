"""The token loop and stop-sequence scanner, with a fake model (no weights needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cocoon.inference._generation import (
    ChoiceDone,
    Event,
    Failed,
    Finished,
    GenerationJob,
    StopScanner,
    TextDelta,
    run_generation,
)

EOS = 0
VOCAB = {1: b"Hel", 2: b"lo", 3: b" wor", 4: b"ld", 5: b"\xc3", 6: b"\xa9", 7: b"!"}


class FakeModel:
    """Emits token ids from a fixed list; token t detokenizes to VOCAB[t]."""

    def __init__(self, script: list[int], n_ctx: int = 64) -> None:
        self.script = script
        self._n_ctx = n_ctx
        self.n_tokens = 0
        self.input_ids: list[int] = []
        self.seeds: list[int] = []
        self.closed = 0
        self.on_token: Any = None

    def n_ctx(self) -> int:
        return self._n_ctx

    def set_seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def detokenize(
        self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False
    ) -> bytes:
        return b"".join(VOCAB.get(t, b"") for t in tokens)

    def generate(self, tokens: Sequence[int], **kwargs: Any) -> Iterator[int]:
        self.input_ids = list(tokens)
        self.n_tokens = len(tokens)
        try:
            for token in self.script:
                if self.on_token is not None:
                    self.on_token()
                yield token
        finally:
            self.closed += 1


def job(**kw: Any) -> GenerationJob:
    base: dict[str, Any] = {
        "prompt_tokens": (9, 9, 9),
        "max_tokens": 100,
        "n": 1,
        "seed": 7,
        "stops": (),
        "sampling": {},
        "echo_text": None,
        "cancel": threading.Event(),
    }
    base.update(kw)
    return GenerationJob(**base)


def run(model: FakeModel, j: GenerationJob) -> list[Event]:
    events: list[Event] = []
    final = run_generation(model, frozenset({EOS}), j, events.append)
    assert events[-1] is final
    return events


def text_of(events: list[Event], index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == index)


def test_stops_at_end_of_generation_token_and_counts_it() -> None:
    model = FakeModel([1, 2, 3, 4, EOS, 7])
    events = run(model, job())
    assert text_of(events) == "Hello world"
    assert ChoiceDone(0, "stop") in events
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.usage.prompt_tokens == 3
    assert final.usage.completion_tokens == 5  # the end token was computed, so it is counted
    assert model.closed == 1


def test_length_limit() -> None:
    events = run(FakeModel([1, 2, 3, 4, 7]), job(max_tokens=2))
    assert text_of(events) == "Hello"
    assert ChoiceDone(0, "length") in events
    assert isinstance(events[-1], Finished) and events[-1].usage.completion_tokens == 2


def test_context_limit_counts_as_length() -> None:
    events = run(FakeModel([1, 2, 3, 4, 7], n_ctx=5), job())
    assert isinstance(events[-1], Finished) and events[-1].usage.completion_tokens == 2


def test_zero_max_tokens_generates_nothing() -> None:
    model = FakeModel([1, 2])
    events = run(model, job(max_tokens=0))
    assert text_of(events) == ""
    assert model.closed == 0


def test_stop_sequence_is_cut_and_not_emitted() -> None:
    events = run(FakeModel([1, 2, 3, 4, 7]), job(stops=("o w",)))
    assert text_of(events) == "Hell"
    assert ChoiceDone(0, "stop") in events


def test_split_utf8_character_is_joined() -> None:
    events = run(FakeModel([5, 6, EOS]), job())
    assert text_of(events) == "é"


def test_n_choices_echo_and_seeds() -> None:
    model = FakeModel([1, 2, EOS])
    events = run(model, job(n=2, echo_text=">"))
    assert text_of(events, 0) == text_of(events, 1) == ">Hello"
    assert model.seeds == [7, 8]
    assert isinstance(events[-1], Finished) and events[-1].usage.completion_tokens == 6


def test_cancel_stops_between_tokens() -> None:
    cancel = threading.Event()
    model = FakeModel([1, 2, 3, 4, 7, 7, 7, 7])
    seen = 0

    def count() -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            cancel.set()

    model.on_token = count
    events = run(model, job(cancel=cancel))
    final = events[-1]
    assert isinstance(final, Finished) and final.cancelled
    assert final.usage.completion_tokens == 2
    assert not any(isinstance(e, ChoiceDone) for e in events)
    assert model.closed == 1


def test_model_failure_is_reported_not_raised() -> None:
    class Broken(FakeModel):
        def generate(self, tokens: Sequence[int], **kwargs: Any) -> Iterator[int]:
            raise RuntimeError("llama_decode failed")

    events = run(Broken([]), job())
    assert isinstance(events[-1], Failed)


def test_cached_prefix_from_previous_request() -> None:
    model = FakeModel([EOS])
    run(model, job(prompt_tokens=(1, 2, 3, 4)))
    final = run(model, job(prompt_tokens=(1, 2, 3, 5, 6)))[-1]
    assert isinstance(final, Finished) and final.usage.cached_tokens == 3
    final = run(model, job(prompt_tokens=(1, 2, 3, 5, 6)))[-1]
    assert isinstance(final, Finished) and final.usage.cached_tokens == 4  # the last token is re-evaluated


@given(
    pieces=st.lists(st.text(alphabet="ab\n", max_size=4), max_size=12),
    stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
)
def test_stop_scanner_cuts_at_the_first_stop_to_complete(pieces: list[str], stops: list[str]) -> None:
    scanner = StopScanner(stops)
    out = "".join(scanner.push(p) for p in pieces) + scanner.flush()
    full = "".join(pieces)
    # Reference: scan the text one character at a time; the first stop to complete cuts at its start.
    expected, stopped = full, False
    for end in range(1, len(full) + 1):
        done = [s for s in stops if full[:end].endswith(s)]
        if done:
            expected, stopped = full[: end - max(len(s) for s in done)], True
            break
    assert out == expected
    assert scanner.stopped == stopped
    # Any split of the same text gives the same answer.
    whole = StopScanner(stops)
    assert whole.push(full) + whole.flush() == expected


def test_ignore_eos_generates_through_end_tokens() -> None:
    events = run(FakeModel([1, EOS, 2]), job(max_tokens=3, ignore_eos=True))
    assert text_of(events) == "Hello"
    assert ChoiceDone(0, "length") in events
