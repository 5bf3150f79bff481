"""Hypothesis: any body and any chunking round-trip; any change to the bytes is refused."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.e2ee import AnswerOpener, AnswerSealer, SealError, SealKeyPair, Suite, open_request, seal_request

PAIRS = {suite: [SealKeyPair.generate(suite) for _ in range(3)] for suite in Suite}
AAD = b"route"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    body=st.binary(max_size=4096),
    suites=st.lists(st.sampled_from(list(Suite)), min_size=1, max_size=3),
    opener=st.integers(min_value=0, max_value=2),
)
def test_any_body_round_trips_for_any_recipient(body: bytes, suites: list[Suite], opener: int) -> None:
    keys = [PAIRS[suite][i] for i, suite in enumerate(suites)]
    sealed = seal_request(body, [k.recipient() for k in keys], aad=AAD)
    key = keys[opener % len(keys)]
    opened = open_request(sealed.to_bytes(), key, aad=AAD)
    assert opened.body == body and opened.content_key == sealed.content_key


@FAST
@given(body=st.binary(min_size=1, max_size=256), position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_any_byte_change_is_refused(body: bytes, position: int, flip: int) -> None:
    key = PAIRS[Suite.CLASSICAL][0]
    data = bytearray(seal_request(body, [key.recipient()], aad=AAD).to_bytes())
    data[position % len(data)] ^= flip
    try:
        open_request(bytes(data), key, aad=AAD)
    except SealError:
        return
    raise AssertionError("a changed request opened")


@FAST
@given(text=st.binary(max_size=2048), cuts=st.lists(st.integers(min_value=0, max_value=2048), max_size=12))
def test_any_chunking_of_an_answer_round_trips(text: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    key = bytes(32)
    sealer, opener = AnswerSealer(key, aad=AAD), AnswerOpener(key, aad=AAD)
    frames = [sealer.seal(c) for c in chunks] + [sealer.finish(b"end")]
    out = []
    for frame in frames:
        plain, final = opener.open_next(frame)
        if not final:
            out.append(plain)
    assert b"".join(out) == text and opener.complete and opener.frames == len(chunks) + 1


@FAST
@given(
    n=st.integers(min_value=1, max_value=6),
    order=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=10),
)
def test_only_the_exact_sequence_completes(n: int, order: list[int]) -> None:
    """Feed frames in any order (with drops and repeats): the opener completes iff it got 0..n in order."""
    key = bytes(32)
    sealer = AnswerSealer(key, aad=AAD)
    frames = [sealer.seal(bytes([i])) for i in range(n)] + [sealer.finish()]
    opener = AnswerOpener(key, aad=AAD)
    accepted = []
    for i in order:
        try:
            opener.open_next(frames[i % len(frames)])
            accepted.append(i % len(frames))
        except SealError:
            pass
    assert accepted == list(range(len(accepted)))  # only in-order frames were ever taken
    assert opener.complete == (len(accepted) == n + 1)
