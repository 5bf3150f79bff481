"""parse_frame's one-unpack path accepts and refuses exactly the frames the strict reader does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.e2ee import AnswerSealer, SealError
from cocoon.e2ee.stream import Frame, _parse_frame_strictly, parse_frame


def _outcome(parse: object, data: bytes) -> Frame | str:
    try:
        return parse(data)  # type: ignore[operator, no-any-return]
    except SealError as exc:
        return f"SealError: {exc}"


def _same(data: bytes) -> None:
    assert _outcome(parse_frame, data) == _outcome(_parse_frame_strictly, data)


def _frames(chunks: list[bytes]) -> list[bytes]:
    sealer = AnswerSealer(bytes(32), aad=b"aad", pad_to=1)
    return [sealer.seal(c) for c in chunks] + [sealer.finish(b"t")]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    _same(data)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=3),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=60),
)
def test_mutated_frames(chunks: list[bytes], which: int, at: int, byte: int, cut: int) -> None:
    frames = _frames(chunks)
    frame = frames[which % len(frames)]
    _same(frame)
    if at < len(frame):
        _same(frame[:at] + bytes([byte]) + frame[at + 1 :])  # one byte changed
    _same(frame[: max(0, len(frame) - cut)])  # truncated
    _same(frame[:at] + frame[at + 1 :] if at < len(frame) else frame + b"x")  # one byte gone, or added


def test_other_bytes_types_take_the_strict_path() -> None:
    frame = _frames([b"hello"])[0]
    assert parse_frame(bytearray(frame)) == parse_frame(frame)  # type: ignore[arg-type]
    assert parse_frame(memoryview(frame)) == parse_frame(frame)  # type: ignore[arg-type]
    assert _outcome(parse_frame, "text") == _outcome(_parse_frame_strictly, "text")  # type: ignore[arg-type]
