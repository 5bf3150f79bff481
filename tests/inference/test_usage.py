from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.inference import Usage


def test_defaults_and_total() -> None:
    usage = Usage(prompt_tokens=34, cached_tokens=11, completion_tokens=100, reasoning_tokens=10)
    assert usage.total_tokens == 134
    assert Usage().total_tokens == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt_tokens": -1},
        {"completion_tokens": -5},
        {"prompt_tokens": 3, "cached_tokens": 4},
        {"completion_tokens": 1, "reasoning_tokens": 2},
        {"prompt_tokens": True},
        {"prompt_tokens": 1.0},
    ],
)
def test_invalid_usage_cannot_exist(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Usage(**kwargs)  # type: ignore[arg-type]


def test_openai_round_trip() -> None:
    usage = Usage(prompt_tokens=34, cached_tokens=11, completion_tokens=100, reasoning_tokens=10)
    data = usage.to_openai()
    assert data == {
        "prompt_tokens": 34,
        "completion_tokens": 100,
        "total_tokens": 134,
        "prompt_tokens_details": {"cached_tokens": 11},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    assert Usage.from_openai(data) == usage
    assert Usage.from_dict(usage.to_dict()) == usage


def test_from_openai_tolerates_missing_and_null_details() -> None:
    assert Usage.from_openai(
        {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None}
    ) == Usage(prompt_tokens=5, completion_tokens=2)
    # Some servers put reasoning tokens at the top level (COCOON reads both).
    assert Usage.from_openai({"completion_tokens": 9, "reasoning_tokens": 4}).reasoning_tokens == 4


@pytest.mark.parametrize(
    "data",
    [
        {"prompt_tokens": "5"},
        {"prompt_tokens": -1},
        {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}},
        {"prompt_tokens_details": []},
        [],
    ],
)
def test_from_openai_rejects_bad_values(data: object) -> None:
    with pytest.raises(ValueError):
        Usage.from_openai(data)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown"):
        Usage.from_dict({"prompt_tokens": 1, "total_tokens": 1})


def test_merge_max_keeps_the_largest_counters() -> None:
    a = Usage(prompt_tokens=10, cached_tokens=2, completion_tokens=1)
    b = Usage(prompt_tokens=10, cached_tokens=5, completion_tokens=7, reasoning_tokens=3)
    assert a.merge_max(b) == Usage(prompt_tokens=10, cached_tokens=5, completion_tokens=7, reasoning_tokens=3)


@given(
    prompt=st.integers(0, 10**12),
    cached=st.integers(0, 10**12),
    completion=st.integers(0, 10**12),
    reasoning=st.integers(0, 10**12),
)
def test_round_trips_for_any_valid_usage(prompt: int, cached: int, completion: int, reasoning: int) -> None:
    usage = Usage(
        prompt_tokens=prompt,
        cached_tokens=min(cached, prompt),
        completion_tokens=completion,
        reasoning_tokens=min(reasoning, completion),
    )
    assert Usage.from_openai(usage.to_openai()) == usage
    assert Usage.from_dict(usage.to_dict()) == usage
