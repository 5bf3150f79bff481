"""UsageMeter: SSE and JSON bodies in any split, garbage, caps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.inference import BodyKind, EngineProtocolError, Usage, UsageMeter

USAGE = {
    "prompt_tokens": 34,
    "completion_tokens": 100,
    "total_tokens": 134,
    "prompt_tokens_details": {"cached_tokens": 11},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
EXPECTED = Usage(prompt_tokens=34, cached_tokens=11, completion_tokens=100, reasoning_tokens=10)


def _chunk(text: str) -> dict[str, object]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def sse_body(texts: list[str], *, usage: dict[str, object] | None = USAGE, eol: str = "\n") -> bytes:
    events = [_chunk(t) for t in texts]
    if usage is not None:
        events.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    out = "".join(f"data: {json.dumps(e)}{eol}{eol}" for e in events) + f"data: [DONE]{eol}{eol}"
    return out.encode()


JSON_BODY = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "héllo"}, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }
).encode()


def feed_all(body: bytes, parts: list[int] | None = None, kind: BodyKind = BodyKind.AUTO) -> UsageMeter:
    meter = UsageMeter(kind)
    if parts is None:
        meter.feed(body)
    else:
        pos = 0
        for size in parts:
            meter.feed(body[pos : pos + size])
            pos += size
        meter.feed(body[pos:])
    meter.finish()
    return meter


def one_byte_at_a_time(body: bytes) -> UsageMeter:
    meter = UsageMeter()
    for i in range(len(body)):
        meter.feed(body[i : i + 1])
    meter.finish()
    return meter


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_sse_whole_and_byte_by_byte(eol: str) -> None:
    body = sse_body(["Hel", "lo ", "wörld"], eol=eol)
    for meter in (feed_all(body), one_byte_at_a_time(body)):
        stats = meter.statistics()
        assert meter.usage == EXPECTED
        assert stats.kind is BodyKind.SSE
        assert stats.events == 4  # three deltas and the usage chunk; [DONE] is not an event
        assert stats.content_chars == len("Hello wörld")
        assert stats.content_events == 3
        assert stats.done and stats.usage_seen and not stats.truncated
        assert stats.bytes_seen == len(body)


def test_json_whole_and_byte_by_byte() -> None:
    for meter in (feed_all(JSON_BODY), one_byte_at_a_time(JSON_BODY)):
        assert meter.usage == EXPECTED
        assert meter.statistics().kind is BodyKind.JSON
        assert meter.content_chars == len("héllo")
        assert meter.data_events == 1


def test_ndjson_like_the_reference_benchmark() -> None:
    lines = [json.dumps({"delta": "0" * 128, "i": i}) for i in range(50)]
    lines.append(json.dumps({"usage": USAGE}))
    meter = feed_all("\n".join(lines).encode(), kind=BodyKind.JSON)
    assert meter.usage == EXPECTED
    assert meter.data_events == 51


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(max_size=20), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=64), max_size=40),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_sse_any_split_gives_the_same_result(texts: list[str], cuts: list[int], eol: str) -> None:
    body = sse_body(texts, eol=eol)
    meter = feed_all(body, cuts)
    assert meter.usage == EXPECTED
    assert meter.content_chars == sum(len(t) for t in texts)
    assert meter.statistics().done


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_json_any_split_gives_the_same_result(cuts: list[int]) -> None:
    assert feed_all(JSON_BODY, cuts).usage == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes(data: bytes) -> None:
    meter = UsageMeter(max_line_bytes=128, max_json_bytes=256)
    try:
        meter.feed(data)
        usage = meter.finish()
    except EngineProtocolError:
        return
    assert isinstance(usage, Usage)


def test_sse_comments_multiline_data_and_other_fields() -> None:
    body = (
        b": keep-alive\n\nevent: message\nid: 7\nretry: 100\n"
        b'data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "ab"}}]}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
        b"data: [DONE]\n\n"
    )
    meter = feed_all(body)
    assert meter.usage == Usage(prompt_tokens=3, completion_tokens=2)
    assert meter.content_chars == 2


def test_cumulative_usage_in_every_chunk_counts_once() -> None:
    events = [
        {"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": 5, "completion_tokens": i}}
        for i in range(1, 4)
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    assert feed_all(body).usage == Usage(prompt_tokens=5, completion_tokens=3)


def test_error_chunk_is_recorded() -> None:
    body = sse_body(["x"], usage=None).replace(
        b"data: [DONE]", b'data: {"error": {"message": "boom", "code": 500}}\n\ndata: [DONE]'
    )
    stats = feed_all(body).statistics()
    assert stats.error == "boom"
    assert not stats.usage_seen


def test_no_usage_means_zero_and_partial_usage_counts_deltas() -> None:
    meter = feed_all(sse_body(["a", "", "b"], usage=None))
    assert not meter.usage_seen
    assert meter.usage == Usage()
    assert meter.partial_usage() == Usage(completion_tokens=2)
    assert feed_all(sse_body(["a"])).partial_usage() == EXPECTED


def test_truncated_stream_keeps_what_arrived() -> None:
    body = sse_body(["ab", "cd"])
    cut = body.index(b'data: {"id": "c", "object": "chat.completion.chunk", "choices": [],')
    meter = UsageMeter()
    meter.feed(body[: cut + 30])
    meter.finish()
    stats = meter.statistics()
    assert stats.truncated and not stats.done and not stats.usage_seen
    assert stats.content_chars == 4


def test_last_event_without_blank_line_is_still_read() -> None:
    meter = UsageMeter()
    meter.feed(b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}')
    assert meter.finish() == Usage(prompt_tokens=2, completion_tokens=1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"hello world\n\n", "not an SSE line"),
        (b"data: {not json}\n\n", "not JSON"),
        (b"data: [1, 2]\n\n", "expected a JSON object"),
        (b'data: {"usage": {"prompt_tokens": -3}}\n\n', "invalid usage"),
        (
            b'data: {"usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 9}}}\n\n',
            "invalid usage",
        ),
        (b"data: [DONE]\n\ndata: {}\n\n", "after \\[DONE\\]"),
        (b"data: \xff\xfe\n\n", "UTF-8"),
    ],
)
def test_sse_garbage_is_a_clear_error(body: bytes, message: str) -> None:
    meter = UsageMeter()
    with pytest.raises(EngineProtocolError, match=message):
        meter.feed(body)
        meter.finish()
    # The meter stays failed.
    with pytest.raises(EngineProtocolError):
        meter.feed(b"data: {}\n\n")
    with pytest.raises(EngineProtocolError):
        meter.finish()


@pytest.mark.parametrize("body", [b'{"usage": ', b"{}{}x", b'{"a": 1}\n[', b"\xff{}"])
def test_json_garbage_is_a_clear_error(body: bytes) -> None:
    meter = UsageMeter(BodyKind.JSON)
    meter.feed(body)
    with pytest.raises(EngineProtocolError):
        meter.finish()


def test_absurd_line_length_is_refused_without_buffering_it() -> None:
    meter = UsageMeter(max_line_bytes=1024)
    meter.feed(b"data: " + b"x" * 1000)
    with pytest.raises(EngineProtocolError, match="longer than 1024"):
        meter.feed(b"x" * 100)


def test_json_body_cap() -> None:
    meter = UsageMeter(max_json_bytes=64)
    with pytest.raises(EngineProtocolError, match="longer than 64"):
        meter.feed(b'{"a": "' + b"x" * 100)


def test_kind_from_content_type() -> None:
    assert BodyKind.from_content_type("text/event-stream; charset=utf-8") is BodyKind.SSE
    assert BodyKind.from_content_type("application/json") is BodyKind.JSON
    assert BodyKind.from_content_type(None) is BodyKind.AUTO


def test_empty_body_and_misuse() -> None:
    meter = UsageMeter()
    meter.feed(b"  \n")
    assert meter.finish() == Usage()
    assert meter.finish() == Usage()  # idempotent
    with pytest.raises(RuntimeError):
        meter.feed(b"data: {}\n\n")
    with pytest.raises(ValueError):
        UsageMeter(max_line_bytes=1)


def test_tool_call_deltas_count_as_content() -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    body = (
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}).encode()
        + b"\n\n"
        b"data: [DONE]\n\n"
    )
    meter = feed_all(body)
    assert meter.content_chars == len("f") + len('{"a":1}')
    assert meter.partial_usage() == Usage(completion_tokens=1)  # a cut-off call is billed, not free
