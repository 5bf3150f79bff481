"""The sealed answer's content tally counts the same from the meter's parsed events as from its own parse."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.errors import CocoonError
from cocoon.inference.meter import BodyKind, UsageMeter
from cocoon.worker.sealing import ContentTally

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_CALL = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries({}, optional={"name": _TEXT, "arguments": _TEXT})},
    optional={"id": st.sampled_from(["", "call_1"])},
)
_DELTA = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(_TEXT, st.none(), st.lists(st.fixed_dictionaries({"text": _TEXT}), max_size=2)),
        "reasoning_content": _TEXT,
        "refusal": _TEXT,
        "tool_calls": st.lists(_CALL, max_size=2),
    },
)
_CHOICE = st.fixed_dictionaries({"index": st.integers(0, 2)}, optional={"delta": _DELTA, "text": _TEXT})
_EVENT = st.one_of(
    st.fixed_dictionaries({"choices": st.lists(_CHOICE, max_size=2)}),
    st.just({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}),
)


def _tally(body: bytes, split: int, *, metered: bool) -> dict[str, int] | None:
    """As the worker does it: the meter reads each chunk, then the chunk is sealed (tally.feed)."""
    meter, tally = UsageMeter(BodyKind.SSE), ContentTally()
    if metered:
        meter.observe(tally.observer())
    try:
        for start in range(0, len(body), split):
            chunk = body[start : start + split]
            meter.feed(chunk)
            tally.feed(chunk)
        meter.finish()
    except CocoonError:
        return None  # the answer fails: nothing is tallied for the proxy
    return tally.finish()


@settings(max_examples=200, deadline=None)
@given(events=st.lists(_EVENT, max_size=6), done=st.booleans(), split=st.integers(1, 300), cut=st.booleans())
def test_metered_tally_equals_its_own_parse(events: list[Any], done: bool, split: int, cut: bool) -> None:
    body = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events)
    body += b"data: [DONE]\n\n" if done else b""
    if cut:
        body = body[: len(body) * 2 // 3]
    assert _tally(body, split, metered=True) == _tally(body, split, metered=False)


def test_a_json_answer_is_tallied_by_the_tally_itself() -> None:
    body = json.dumps({"choices": [{"message": {"content": "héllo"}}]}).encode()
    meter, tally = UsageMeter(BodyKind.AUTO), ContentTally()
    meter.observe(tally.observer())
    meter.feed(body)
    tally.feed(body)
    meter.finish()
    assert tally.finish() == {"text_bytes": 6, "deltas": 0, "tool_calls": 0, "content_frames": 1}
