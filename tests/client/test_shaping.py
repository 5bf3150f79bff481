"""The answer as the app asked for it: the usage chunk only with include_usage, cost everywhere safe."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cocoon.client.shaping import ChatShaper, ResponsesShaper
from cocoon.oai import DONE, ApiError, ErrorKind, SseDecoder, Usage, encode_sse
from cocoon.oai.responses import responses_to_chat

DELTA = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "delta": {"content": "hi"}}],
}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
USAGE_CHUNK = {**DELTA, "choices": [], "usage": USAGE}
UPSTREAM = encode_sse(DELTA) + encode_sse(DELTA) + encode_sse(USAGE_CHUNK) + encode_sse(DONE)
COST = {"cost_nano": 42, "adjusted_tokens": 5, "receipt_verified": True}


def _run(shaper: ChatShaper, data: bytes, step: int) -> bytes:
    out = shaper.start() + b"".join(shaper.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out + shaper.end(Usage(3, 2), COST)


def _payloads(raw: bytes) -> list[Any]:
    return [e.data if e.is_done else json.loads(e.data) for e in SseDecoder().feed(raw)]


@given(st.integers(min_value=1, max_value=64))
def test_without_include_usage_every_chunk_has_a_choice(step: int) -> None:
    events = _payloads(_run(ChatShaper(wants_usage=False), UPSTREAM, step))
    assert events == [DELTA, DELTA, DONE]
    for chunk in events[:-1]:
        assert chunk["choices"][0]["delta"]["content"] == "hi" and "usage" not in chunk


def test_the_cost_travels_in_a_comment_sse_parsers_skip() -> None:
    raw = _run(ChatShaper(wants_usage=False), UPSTREAM, 1000)
    assert b": cocoon {" in raw
    comment = next(line for line in raw.split(b"\n") if line.startswith(b": cocoon "))
    assert json.loads(comment[len(b": cocoon ") :])["cost_nano"] == 42


def test_with_include_usage_the_usage_chunk_comes_last_with_the_cost() -> None:
    events = _payloads(_run(ChatShaper(wants_usage=True), UPSTREAM, 7))
    assert events[:2] == [DELTA, DELTA] and events[-1] == DONE
    final = events[-2]
    assert final["choices"] == [] and final["usage"]["cost"] == 42 and final["usage"]["total_tokens"] == 5


def test_continuous_usage_is_moved_to_the_end() -> None:
    upstream = encode_sse({**DELTA, "usage": USAGE}) + encode_sse(DONE)
    hidden = _payloads(_run(ChatShaper(wants_usage=False), upstream, 5))
    assert hidden == [DELTA, DONE]
    shown = _payloads(_run(ChatShaper(wants_usage=True), upstream, 5))
    assert shown[0] == {**DELTA, "usage": None} and shown[1]["usage"]["cost"] == 42


def test_a_missing_usage_chunk_is_made_from_the_metered_usage() -> None:
    events = _payloads(_run(ChatShaper(wants_usage=True), encode_sse(DELTA) + encode_sse(DONE), 3))
    assert events[1]["id"] == "c1" and events[1]["usage"]["prompt_tokens"] == 3


def test_whole_bodies_get_the_cost_and_garbage_is_left_alone() -> None:
    shaper = ChatShaper(wants_usage=False)
    body = json.dumps({"choices": [], "usage": USAGE}).encode()
    assert json.loads(shaper.whole(body, COST))["usage"]["cost"] == 42
    assert shaper.whole(b"not json", COST) == b"not json"


def test_an_over_long_upstream_line_is_an_upstream_failure() -> None:
    shaper = ChatShaper(wants_usage=False)
    try:
        shaper.feed(b"data: " + b"x" * (5 * 1024 * 1024))
    except ApiError as exc:
        assert exc.kind is ErrorKind.UPSTREAM_FAILED
    else:
        raise AssertionError("an over-long line must fail")


def test_errors_mid_stream_end_the_stream() -> None:
    events = _payloads(ChatShaper(wants_usage=False).fail(ApiError(ErrorKind.UPSTREAM_FAILED, "gone")))
    assert events[0]["error"]["code"] == "upstream_failed" and events[-1] == DONE


def test_responses_shaper_whole_and_stream() -> None:
    _, ctx = responses_to_chat({"model": "m", "input": "hi"}, response_id="resp_1", created_at=1)
    chat = {"choices": [{"message": {"content": "yo"}, "finish_reason": "stop"}], "usage": USAGE}
    whole = json.loads(ResponsesShaper(ctx).whole(json.dumps(chat).encode(), COST))
    assert whole["object"] == "response" and whole["usage"]["cost"] == 42
    error = json.dumps({"error": {"message": "bad"}}).encode()
    assert ResponsesShaper(ctx).whole(error, COST) == error
    shaper = ResponsesShaper(ctx)
    raw = shaper.start() + shaper.feed(UPSTREAM) + shaper.end(Usage(3, 2), COST)
    types = [e["type"] for e in _payloads(raw)]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 2


_PIECES = [
    encode_sse(DELTA),
    encode_sse({**DELTA, "usage": None}),
    encode_sse({**DELTA, "usage": USAGE}),
    encode_sse(USAGE_CHUNK),
    b"data:" + json.dumps(DELTA).encode() + b"\n\n",  # no space after the colon
    b": keep-alive\n\n",
    b"event: named\n" + encode_sse(DELTA),
    b'data: {"a":\ndata: 1}\n\n',  # one event on two data lines
    encode_sse(DELTA).replace(b"\n", b"\r\n"),
    encode_sse(DONE),
]


@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8),
    st.booleans(),
)
def test_the_answer_does_not_depend_on_how_the_stream_was_cut(
    pieces: list[bytes], cuts: list[int], wants_usage: bool
) -> None:
    """Runs of plain events are relayed without decoding: the result must equal decoding it all."""
    upstream = b"".join(pieces)
    byte_by_byte = _run(ChatShaper(wants_usage=wants_usage), upstream, 1)
    whole = _run(ChatShaper(wants_usage=wants_usage), upstream, len(upstream))
    shaper, out, at = ChatShaper(wants_usage=wants_usage), bytearray(), 0
    for size in cuts * 50:
        out += shaper.feed(upstream[at : at + size])
        at += size
        if at >= len(upstream):
            break
    out += shaper.feed(upstream[at:]) + shaper.end(Usage(3, 2), COST)
    assert whole == byte_by_byte == bytes(out)
