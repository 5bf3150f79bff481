"""The meter's own cut of one-line ``data:`` events reads every body as the SSE decoder alone does."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.errors import CocoonError
from cocoon.inference.meter import BodyKind, UsageMeter

_EVENT = st.one_of(
    st.builds(lambda n: {"choices": [{"index": 0, "delta": {"content": "é" * n}}]}, st.integers(0, 40)),
    st.just({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}),
    st.just({"error": {"message": "boom"}}),
)
_LINE = st.one_of(
    _EVENT.map(lambda e: b"data: " + json.dumps(e, ensure_ascii=False).encode()),
    _EVENT.map(lambda e: b"data:" + json.dumps(e).encode()),  # no space: the decoder's case
    st.sampled_from(
        [
            b"data: [DONE]",
            b": keep-alive",
            b"event: delta",
            b"id: 7",
            b'data: {"choices": [\ndata: ]}',  # one event over two data lines
            b"bogus line",  # not SSE: the strict meter refuses it either way
            b"data: " + b"x" * 300,  # past the small line limit below
            b"",
        ]
    ),
)
_END = st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n", b"\n\n\n", b"\r\r"])


def _read(body: bytes, split: int, *, decoder_only: bool) -> tuple[Any, ...]:
    meter = UsageMeter(BodyKind.SSE, max_line_bytes=256)
    if decoder_only:
        meter._decoder_reads = True  # the reference: every byte through SseDecoder
    try:
        for start in range(0, len(body), split):
            meter.feed(body[start : start + split])
        usage = meter.finish()
    except CocoonError as exc:
        return ("error", str(exc))
    return usage, meter.statistics()


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(_LINE, _END), max_size=8),
    cut=st.booleans(),
    split=st.integers(1, 500),
)
def test_the_quick_cut_equals_the_decoder(lines: list[tuple[bytes, bytes]], cut: bool, split: int) -> None:
    body = b"".join(line + end for line, end in lines)
    if cut and body:
        body = body[: len(body) // 2]  # a stream that stops mid-event
    assert _read(body, split, decoder_only=False) == _read(body, split, decoder_only=True)


def test_observer_sees_each_parsed_event_once_and_not_the_cut_end() -> None:
    seen: list[dict[str, Any]] = []
    meter = UsageMeter(BodyKind.SSE)
    meter.observe(seen.append)
    meter.feed(b'data: {"choices": []}\n\ndata: {"choices": [], "usage": {"prompt_tokens": 1}}\n\nda')
    meter.feed(b'ta: {"choices": [{"delta": {"content": "cut"}}]}')
    meter.finish()
    assert seen == [{"choices": []}, {"choices": [], "usage": {"prompt_tokens": 1}}]
    assert meter.data_events == 3  # the meter still counts the event the cut end completed
