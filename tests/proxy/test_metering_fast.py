"""The relay tally's event parser reads every event exactly as json does, so a worker cannot make the
proxy bill differently by choosing bytes where faster parsers disagree (a guard: orjson, for one, reads
integers past 64 bits as floats and refuses NaN and encoded surrogates)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.proxy import metering
from cocoon.proxy.metering import RelayTally

_JSON_DECODER = json.JSONDecoder()


def _json_path(data: bytes) -> object:
    """The json reading the tally has always had."""
    if data[:2] == b'{"':
        return _JSON_DECODER.decode(data.decode("utf-8", "surrogatepass"))
    return json.loads(data)


def _outcome(parse: Any, data: bytes) -> object:
    try:
        return ("ok", parse(data))
    except ValueError:  # what the tally skips (json's errors and orjson's are ValueErrors)
        return ("skipped",)
    except RecursionError:
        return ("too deep",)


_TEXT = st.text(max_size=8)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_ODD = st.sampled_from(
    [
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"n": 123456789012345678901234567890}',
        b'{"s": "\\ud800"}',
        b'{"s": "\xed\xa0\x80"}',  # an encoded surrogate
        b'\xef\xbb\xbf{"bom": 1}',
        b'{"a": 1, "a": 2}',
        b' {"pad": true} ',
        b'{"x": 1} trailing',
        b"[" * 2000 + b"]" * 2000,
        b'{"u": "\\u00e9\xc3\xa9"}',
        b"\xff",
        b"",
    ]
)


@settings(max_examples=300, deadline=None)
@given(value=_VALUES)
def test_every_json_value_reads_alike(value: object) -> None:
    data = json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    assert _outcome(metering._event_json, data) == _outcome(_json_path, data)


@given(data=_ODD)
def test_what_the_parsers_disagree_on_reads_as_before(data: bytes) -> None:
    assert _outcome(metering._event_json, data) == _outcome(_json_path, data)


def test_a_tally_of_odd_events_is_the_same() -> None:
    events = [b'data: {"choices":[{"delta":{"content":"hi \\u00e9"}}]}', b'data: {"x": NaN}', b"data: [DONE]"]
    body = b"".join(e + b"\n\n" for e in events)
    tally = RelayTally()
    tally.feed(body)
    tally.finish()
    assert (tally.chunks, tally.deltas) == (2, 1)
