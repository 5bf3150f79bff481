"""The worker reads request bodies with orjson where that reads exactly what json reads."""

from __future__ import annotations

import json
import math

import pytest

from cocoon.inference.http import _dump_body
from cocoon.worker.service import _load_body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9"}], "temperature": 0.7}',
        b'{"seed": 123456789012345678901234}',  # past 64 bits: json keeps the integer
        b'{"seed": -9223372036854775809}',
        b'{"x": NaN}',  # json's extension, refused by orjson
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\\ud800"}',
        b'{"a": 1, "a": 2}',
    ],
)
def test_load_body_reads_what_json_reads(raw: bytes) -> None:
    got, want = _load_body(raw), json.loads(raw)
    assert repr(got) == repr(want)


def test_load_body_refuses_what_json_refuses() -> None:
    with pytest.raises(ValueError):
        _load_body(b'{"a": ')


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "stream": True, "n": 1e100, "s": "é"},
        {"seed": 2**70},
        {"t": math.nan},
        {"t": math.inf, "stop": None},
        {"s": "\ud800"},
    ],
)
def test_dump_body_is_the_same_json(payload: dict[str, object]) -> None:
    out = _dump_body(payload)
    assert repr(json.loads(out)) == repr(json.loads(json.dumps(payload)))
