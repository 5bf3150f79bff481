"""The receipt's canonical encoding: orjson's fast path gives json.dumps's bytes, always."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.node.receipt import canonical

_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_VALUES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


def _reference(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.text(), _VALUES, max_size=8))
def test_canonical_is_json_dumps_byte_for_byte(obj: dict[str, Any]) -> None:
    assert canonical(obj) == _reference(obj)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "model", "usage", "worker_key", "sealed", "cost_nano", "é", "\x00"]),
        st.integers(min_value=-(2**70), max_value=2**70)
        | st.text(alphabet=st.characters(max_codepoint=0x2FF)),
    )
)
def test_canonical_receipt_like_values(obj: dict[str, Any]) -> None:
    assert canonical(obj) == _reference(obj)


def test_canonical_subclasses_and_tuples_fall_back() -> None:
    class Sub(dict[str, Any]):
        pass

    obj = {"a": (1, 2), "b": Sub(z=1, y=2.5)}
    assert canonical(obj) == _reference(obj)
