"""routing_aad's shortcut for plain strings writes exactly what json.dumps writes."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from cocoon.e2ee import routing_aad

_TEXT = st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(max_codepoint=127), max_size=12))


@given(endpoint=_TEXT, model=_TEXT, limit=st.one_of(st.none(), st.integers(0, 2**64)), envelope=_TEXT)
def test_routing_aad_is_the_canonical_json(
    endpoint: str, model: str, limit: int | None, envelope: str
) -> None:
    fields = ["cocoon-e2ee/v1/route", endpoint, model, limit, envelope]
    expected = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    try:
        got = routing_aad(endpoint, model, limit, envelope)
    except UnicodeEncodeError:  # a lone surrogate: refused as before
        return
    assert got == expected
