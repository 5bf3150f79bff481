"""The one SSE decoder/encoder: any split, every line ending, bounded buffers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.oai import DONE, SSE_DONE, SseDecoder, SseEvent, SseLineTooLong, encode_sse
from cocoon.oai.sse import last_of_data_run

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a":1}\n\n'
    b'event: response.created\ndata: {"b":2}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"id: 7\nretry: 10\nunknown: x\ndata:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SseEvent(b'{"a":1}'),
    SseEvent(b'{"b":2}', "response.created"),
    SseEvent(b"line one\nline two"),
    SseEvent(b"no-space"),
    SseEvent(DONE),
]


def _decode_in_pieces(data: bytes, size: int) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for i in range(0, len(data), size):
        events += decoder.feed(data[i : i + size])
    return events + decoder.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_and_line_ending_gives_the_same_events(size: int, newline: bytes) -> None:
    assert _decode_in_pieces(STREAM.replace(b"\n", newline), size) == EXPECTED


def test_done_and_json_helpers() -> None:
    (event,) = SseDecoder().feed(SSE_DONE)
    assert event.is_done
    assert SseEvent(b'{"x": [1]}').json() == {"x": [1]}


def test_trailing_event_without_blank_line_is_dispatched_by_finish() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b'data: {"a":1}') == []
    assert decoder.finish() == [SseEvent(b'{"a":1}')]


def test_over_long_line_raises_and_does_not_keep_growing() -> None:
    decoder = SseDecoder(max_line_bytes=64)
    decoder.feed(b"data: " + b"x" * 40)
    with pytest.raises(SseLineTooLong):
        decoder.feed(b"y" * 40)
    assert decoder.buffered == 0


def test_over_long_event_made_of_many_short_lines_raises() -> None:
    decoder = SseDecoder(max_line_bytes=64)
    with pytest.raises(SseLineTooLong):
        decoder.feed(b"data: 0123456789\n" * 10)


def test_scanning_a_long_line_in_small_pieces_stays_linear() -> None:
    decoder = SseDecoder(max_line_bytes=1 << 20)
    for _ in range(20_000):
        assert decoder.feed(b"x" * 40) == []
    assert decoder.buffered == 800_000


def test_encode_round_trips_through_the_decoder() -> None:
    payloads: list[bytes | str | dict[str, str]] = [{"ü": "a\nb"}, "two\nlines", b"raw", DONE]
    wire = b"".join(encode_sse(p) for p in payloads) + encode_sse({"t": 1}, event="response.done")
    events = SseDecoder().feed(wire)
    assert [e.data for e in events] == [
        '{"ü":"a\\nb"}'.encode(),
        b"two\nlines",
        b"raw",
        DONE,
        b'{"t":1}',
    ]
    assert events[-1].event == "response.done"
    assert encode_sse(DONE) == SSE_DONE


QUICK = (
    b'data: {"n":0}\n\ndata:  two spaces\n\ndata:\n\n'
    b": comment\n\n"
    b'data: {"n":1}\n\nevent: named\ndata: x\n\ndata: {"n":2}\n\ndata: a\ndata: b\n\n'
    b'data: {"n":3}\r\n\r\ndata: {"n":4}\n\ndata: [DONE]\n\n'
)
QUICK_EXPECTED = [
    SseEvent(b'{"n":0}'),
    SseEvent(b" two spaces"),
    SseEvent(b""),
    SseEvent(b'{"n":1}'),
    SseEvent(b"x", "named"),
    SseEvent(b'{"n":2}'),
    SseEvent(b"a\nb"),
    SseEvent(b'{"n":3}'),
    SseEvent(b'{"n":4}'),
    SseEvent(DONE),
]


def test_runs_of_one_line_events_decode_the_same_in_every_split() -> None:
    for size in range(1, len(QUICK) + 1):
        assert _decode_in_pieces(QUICK, size) == QUICK_EXPECTED, size


def test_an_over_long_line_in_a_run_of_one_line_events_still_raises() -> None:
    decoder = SseDecoder(max_line_bytes=16)
    assert decoder.feed(b"data: short\n\n") == [SseEvent(b"short")]
    with pytest.raises(SseLineTooLong):
        decoder.feed(b"data: " + b"x" * 16 + b"\n\n")


@given(
    st.lists(
        st.sampled_from([b"data: ", b"data:", b"\n", b"\n\n", b"\r", b"x", b"[DONE]", b": c"]), max_size=12
    )
)
def test_a_plain_data_run_decodes_and_re_encodes_to_itself(parts: list[bytes]) -> None:
    data = b"".join(parts)
    last = last_of_data_run(data)
    events = SseDecoder().feed(data)
    if last is not None:
        assert b"".join(encode_sse(e.data, event=e.event) for e in events) == data
        assert events[-1].data == last


def test_a_plain_data_run() -> None:
    assert last_of_data_run(b"data: a\n\ndata: b\n\n") == b"b"
    assert last_of_data_run(b"data: a\n\n") == b"a"
    for not_plain in (
        b"data: a\n\n\ndata: b\n\n",
        b"data: a\ndata: b\n\n",
        b"data:a\n\n",
        b"data: a",
        b": c\n\n",
    ):
        assert last_of_data_run(not_plain) is None
    assert last_of_data_run(b"data: " + b"x" * 100 + b"\n\n", max_line_bytes=64) is None
