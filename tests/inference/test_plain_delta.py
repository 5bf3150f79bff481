"""The usual event's quick count (one choice, a delta of role and content) equals the field-by-field one
at the meter and at the worker's content tally, for every choice shape near the usual one."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.inference.meter import UsageMeter, _choice_chars
from cocoon.worker.sealing import ContentTally

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)  # surrogates too
_VALUE = st.one_of(
    _TEXT, st.none(), st.integers(), st.lists(st.fixed_dictionaries({"text": _TEXT}), max_size=2)
)
_CALLS = st.lists(
    st.fixed_dictionaries(
        {"function": st.fixed_dictionaries({}, optional={"name": _TEXT, "arguments": _TEXT})},
        optional={"id": st.sampled_from(["", "c"])},
    ),
    max_size=2,
)
_DELTA = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.just("assistant"),
            "content": _VALUE,
            "reasoning_content": _VALUE,
            "reasoning": _VALUE,
            "refusal": _VALUE,
            "tool_calls": _CALLS,
        },
    ),
    _VALUE,
)
_CHOICE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.integers(0, 2),
            "delta": _DELTA,
            "message": _DELTA,
            "text": _VALUE,
            "logprobs": st.none(),
            "finish_reason": st.sampled_from([None, "stop"]),
        },
    ),
    _VALUE,
)


def _meter_count(choices: list[Any]) -> tuple[int, int, int]:
    meter = UsageMeter()
    meter._count_event(choices)
    return meter.data_events, meter.content_chars, meter.content_events


def _tally(choices: list[Any], *, quick: bool, streamed: bool) -> tuple[int, ...]:
    tally = ContentTally()
    n = (
        tally._choices({"choices": choices}, streamed=streamed)
        if quick
        else tally._each_choice(choices, streamed)
    )
    return n, tally.text_bytes, tally.deltas, tally.tool_calls


@settings(max_examples=400, deadline=None)
@given(choice=_CHOICE, streamed=st.booleans())
def test_quick_count_equals_field_by_field(choice: Any, streamed: bool) -> None:
    chars = _choice_chars(choice) if isinstance(choice, dict) else 0
    assert _meter_count([choice]) == (1, chars, 1 if chars else 0)
    assert _tally([choice], quick=True, streamed=streamed) == _tally([choice], quick=False, streamed=streamed)


def test_the_usual_event_counts_its_content() -> None:
    choice = {"index": 0, "delta": {"role": "assistant", "content": "héllo"}, "finish_reason": None}
    assert _meter_count([choice]) == (1, 5, 1)
    assert _tally([choice], quick=True, streamed=True) == (6, 6, 1, 0)
