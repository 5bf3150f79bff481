"""The parsers of outside input (requests, frames, claims, aad fields) raise SealError on anything
bad, never another exception, and never accept what they should not."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.e2ee import (
    AnswerOpener,
    AnswerSealer,
    RecipientKey,
    SealedRequest,
    SealError,
    SealKeyPair,
    Suite,
    open_request,
    routing_aad,
    seal_request,
)

PAIR = SealKeyPair.generate(Suite.HYBRID)
VALID = seal_request(
    b"hello", [PAIR.recipient(), SealKeyPair.generate(Suite.CLASSICAL).recipient()], aad=b""
).to_bytes()
FRAME0 = AnswerSealer(bytes(32), aad=b"").seal(b"chunk")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_JSON = settings(FUZZ, max_examples=80)  # nested values are slow to draw
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes_never_parse_into_a_request(data: bytes) -> None:
    try:
        SealedRequest.from_bytes(data)
    except SealError:
        return
    raise AssertionError("random bytes parsed")  # no random input is a well-formed envelope


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(min_value=0, max_value=len(VALID) + 4),
    tail=st.binary(max_size=4),
)
def test_mutated_requests_raise_only_seal_errors(
    edits: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    data = _mutate(VALID, edits, cut) + tail
    try:
        opened = open_request(data, PAIR, aad=b"")
    except SealError:
        return
    assert data == VALID and opened.body == b"hello"  # only the unchanged envelope opens


@FUZZ
@given(data=st.binary(max_size=200) | st.builds(lambda e, c: _mutate(FRAME0, e, c),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3),
       st.none() | st.integers(min_value=0, max_value=len(FRAME0))))  # fmt: skip
def test_frames_raise_only_seal_errors(data: bytes) -> None:
    opener = AnswerOpener(bytes(32), aad=b"")
    try:
        assert opener.open_next(data) == (b"chunk", False) and data == FRAME0
    except SealError:
        assert opener.frames == 0 and not opener.complete


@FUZZ_JSON
@given(
    worker=json_values,
    claim=st.dictionaries(st.sampled_from(["suite", "public_key", "key_id", "x"]), json_values),
)
def test_claims_raise_only_seal_errors(worker: Any, claim: dict[str, Any]) -> None:
    try:
        RecipientKey.from_claim(worker, claim)
    except SealError:
        return
    raise AssertionError("a random claim was accepted")


@FUZZ
@given(public=st.binary(min_size=1216, max_size=1216) | st.binary(min_size=32, max_size=32))
def test_random_public_keys_with_their_own_ids(public: bytes) -> None:
    """A claim whose id matches its (random) key: either refused with SealError or usable to seal."""
    from cocoon.e2ee.keys import key_id

    suite = Suite.HYBRID if len(public) == 1216 else Suite.CLASSICAL
    claim = {"suite": suite.value, "public_key": public.hex(), "key_id": key_id(suite, public).hex()}
    try:
        recipient = RecipientKey.from_claim("w", claim)
        seal_request(b"x", [recipient], aad=b"")
    except SealError:
        pass


@FUZZ_JSON
@given(values=st.tuples(json_values, json_values, json_values, json_values))
def test_routing_aad_raises_only_seal_errors(values: tuple[Any, Any, Any, Any]) -> None:
    with contextlib.suppress(SealError):
        assert routing_aad(*values).startswith(b'["cocoon-e2ee/v1/route"')


def test_claims_that_almost_fit_are_refused() -> None:
    good = PAIR.claim()
    for change in (
        {"suite": "x25519"},  # another suite for the same key
        {"key_id": "00" * 16},
        {"public_key": good["public_key"][:-2]},
        {"public_key": "zz" + good["public_key"][2:]},
    ):
        try:
            RecipientKey.from_claim("w", {**good, **change})
        except SealError:
            continue
        raise AssertionError(f"accepted {change}")
    assert RecipientKey.from_claim("w", good).key_id == PAIR.key_id
