"""The meter's fast path (orjson, plain-dict checks) reads every body exactly as the careful json path."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.errors import CocoonError
from cocoon.inference.meter import BodyKind, UsageMeter

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_DELTA = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(_TEXT, st.none(), st.integers()),
        "reasoning_content": _TEXT,
        "tool_calls": st.lists(
            st.fixed_dictionaries({"function": st.fixed_dictionaries({"name": _TEXT, "arguments": _TEXT})}),
            max_size=2,
        ),
    },
)
_CHOICE = st.fixed_dictionaries({"index": st.integers(0, 3)}, optional={"delta": _DELTA, "text": _TEXT})
_USAGE = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(-1, 10**6), "completion_tokens": st.integers(0, 10**6)},
    optional={"total_tokens": st.integers(-(2**70), 2**70)},  # past 64 bits orjson would read a float
)
_EVENT = st.one_of(
    st.fixed_dictionaries({"id": st.just("c1"), "choices": st.lists(_CHOICE, max_size=2)}),
    st.fixed_dictionaries({"choices": st.just([]), "usage": _USAGE}),
    st.fixed_dictionaries({"choices": st.lists(_CHOICE, max_size=2), "usage": st.none()}),  # every chunk
    st.fixed_dictionaries(
        {"usage": st.fixed_dictionaries({"prompt_tokens": st.sampled_from([1.0, 2**64, 2.5])})},
        optional={"choices": st.just([])},
    ),
    st.fixed_dictionaries(
        {"usage": st.fixed_dictionaries({"prompt_tokens_details": st.just({"cached_tokens": 2**70})})}
    ),
    st.fixed_dictionaries({"error": st.fixed_dictionaries({"message": _TEXT})}),
    st.lists(st.integers(), max_size=2),  # not an object: refused either way
)
_RAW = st.sampled_from(
    [
        b"{not json}",
        b'{"x": NaN}',
        b"[DONE]",
        b"\xff\xfe",
        b'{"n": 1' + b"0" * 30 + b"}",
        b'{"usage": {"prompt_tokens": 18446744073709551616, "completion_tokens": 1}}',
        b'{"choices": [{"index": -9223372036854775809, "delta": {"content": "x"}}]}',
        b'{"choices": [{"delta": {"content": "\\ud800 lone"}}]}',
        b'{"choices": [{"delta": {"content": "\xed\xa0\x80"}}]}',
        b'{"choices": [{"delta": {"content": 1e400}}]}',
    ]
)


def _body(events: list[Any], raws: list[bytes]) -> bytes:
    parts = [b"data: " + json.dumps(e, ensure_ascii=False).encode() for e in events]
    parts += [b"data: " + raw for raw in raws]
    return b"".join(p + b"\n\n" for p in parts)


def _read(body: bytes, split: int) -> tuple[Any, ...]:
    meter = UsageMeter(BodyKind.SSE)
    try:
        for start in range(0, len(body), split):
            meter.feed(body[start : start + split])
        usage = meter.finish()
    except CocoonError as exc:
        return ("error", str(exc))
    return usage, meter.statistics()


def _refuse(_data: object) -> object:
    raise orjson.JSONDecodeError("forced onto the careful path", "", 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_EVENT, max_size=6), raws=st.lists(_RAW, max_size=2), split=st.integers(1, 400))
def test_fast_path_equals_the_careful_path(
    monkeypatch: pytest.MonkeyPatch, events: list[Any], raws: list[bytes], split: int
) -> None:
    body = _body(events, raws)
    fast = _read(body, split)
    with monkeypatch.context() as patch:
        patch.setattr(orjson, "loads", _refuse)  # the module the meter calls
        careful = _read(body, split)
    assert fast == careful
