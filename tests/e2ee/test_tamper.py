"""Every change a proxy (or anyone on the path) can make to a sealed request or answer is refused
with a SealError, and a refused frame leaves the opener as it was."""

from __future__ import annotations

import pytest

from cocoon.e2ee import (
    AnswerOpener,
    AnswerSealer,
    SealedRequest,
    SealError,
    SealKeyPair,
    Suite,
    open_request,
    seal_request,
)
from cocoon.e2ee.request import Recipient

KEY = bytes(range(32))


def _fields(suite: Suite) -> dict[str, tuple[int, int]]:
    """(offset, length) of each field of a one-recipient request of ``suite`` with a 10-byte body."""
    from cocoon.e2ee.suites import params

    wrap = params(suite).wrap_size
    spans = [("version", 1), ("count", 1), ("suite", 1), ("key id", 16), ("enc", params(suite).enc_size)]
    spans += [("wrapped key", wrap - params(suite).enc_size), ("commitment", 32), ("length", 4), ("body", 26)]
    out, offset = {}, 0
    for name, size in spans:
        out[name] = (offset, size)
        offset += size
    return out


@pytest.mark.parametrize("suite", list(Suite))
def test_a_bit_flip_in_any_field_is_refused(
    suite: Suite, pairs: dict[Suite, list[SealKeyPair]], aad: bytes
) -> None:
    key = pairs[suite][0]
    data = seal_request(b"0123456789", [key.recipient()], aad=aad).to_bytes()
    fields = _fields(suite)
    assert sum(size for _, size in fields.values()) == len(data)
    for name, (offset, size) in fields.items():
        for position in {offset, offset + size // 2, offset + size - 1}:
            for bit in (0, 7):
                bad = bytearray(data)
                bad[position] ^= 1 << bit
                with pytest.raises(SealError):
                    open_request(bytes(bad), key, aad=aad)
                    pytest.fail(f"a flip in {name} at {position} opened")


def test_every_truncation_and_any_extension_is_refused(
    pairs: dict[Suite, list[SealKeyPair]], aad: bytes
) -> None:
    key = pairs[Suite.CLASSICAL][0]
    data = seal_request(b"body", [key.recipient()], aad=aad).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(SealError):
            SealedRequest.from_bytes(data[:cut])
    with pytest.raises(SealError, match="trailing"):
        open_request(data + b"\x00", key, aad=aad)


def test_recipients_cannot_be_dropped_added_or_swapped(
    pairs: dict[Suite, list[SealKeyPair]], aad: bytes
) -> None:
    a, b, c = pairs[Suite.HYBRID]
    sealed = SealedRequest.from_bytes(
        seal_request(b"secret", [a.recipient(), b.recipient()], aad=aad).to_bytes()
    )
    other = SealedRequest.from_bytes(
        seal_request(b"other", [a.recipient(), c.recipient()], aad=aad).to_bytes()
    )

    def rebuilt(recipients: tuple[Recipient, ...], commitment: bytes = sealed.commitment) -> bytes:
        return SealedRequest(recipients, commitment, sealed.ciphertext).to_bytes()

    with pytest.raises(SealError, match="body does not open"):  # b dropped: a's view of the header changed
        open_request(rebuilt(sealed.recipients[:1]), a, aad=aad)
    with pytest.raises(SealError, match="body does not open"):  # c's wrap (of another key) added
        open_request(rebuilt((*sealed.recipients, other.recipients[1])), a, aad=aad)
    with pytest.raises(SealError, match="commitment"):  # a's wrap from another request
        open_request(rebuilt((other.recipients[0], sealed.recipients[1])), a, aad=aad)
    with pytest.raises(SealError, match="body does not open"):  # another request's key, this body
        open_request(rebuilt((other.recipients[0],), other.commitment), a, aad=aad)
    with pytest.raises(SealError, match="same key twice"):
        SealedRequest.from_bytes(rebuilt((sealed.recipients[0], sealed.recipients[0])))


def test_a_wrap_cannot_claim_another_suite(pairs: dict[Suite, list[SealKeyPair]], aad: bytes) -> None:
    classical = pairs[Suite.CLASSICAL][0]
    sealed = SealedRequest.from_bytes(seal_request(b"x", [classical.recipient()], aad=aad).to_bytes())
    (entry,) = sealed.recipients
    forged = Recipient(Suite.HYBRID, entry.key_id, bytes(1120 + 48))
    data = SealedRequest((forged,), sealed.commitment, sealed.ciphertext).to_bytes()
    with pytest.raises(SealError, match="request names mlkem768-x25519"):
        open_request(data, classical, aad=aad)


def test_bad_arguments_to_seal_are_refused(pairs: dict[Suite, list[SealKeyPair]], aad: bytes) -> None:
    key = pairs[Suite.CLASSICAL][0].recipient()
    with pytest.raises(SealError, match=r"1\.\.16"):
        seal_request(b"x", [], aad=aad)
    with pytest.raises(SealError, match="twice"):
        seal_request(b"x", [key, key], aad=aad)
    with pytest.raises(SealError, match="bytes"):
        seal_request("text", [key], aad=aad)  # type: ignore[arg-type]
    with pytest.raises(SealError, match="aad"):
        seal_request(b"x", [key], aad="text")  # type: ignore[arg-type]


def _stream(aad: bytes, chunks: list[bytes], trailer: bytes = b"usage") -> list[bytes]:
    sealer = AnswerSealer(KEY, aad=aad)
    return [sealer.seal(c) for c in chunks] + [sealer.finish(trailer)]


def _open_all(opener: AnswerOpener, frames: list[bytes]) -> list[bytes]:
    out = [opener.open(f) for f in frames[:-1]]
    return [*out, opener.open_final(frames[-1])]


def test_a_bit_flip_anywhere_in_any_frame_is_refused_and_changes_nothing(aad: bytes) -> None:
    frames = _stream(aad, [b"alpha", b"beta"])
    for index, frame in enumerate(frames):
        opener = AnswerOpener(KEY, aad=aad)
        for earlier in frames[:index]:
            opener.open_next(earlier)
        for position in range(len(frame)):
            bad = bytearray(frame)
            bad[position] ^= 0x01
            with pytest.raises(SealError):
                opener.open_next(bytes(bad))
            assert opener.frames == index and not opener.complete
        assert opener.open_next(frame)[0] == [b"alpha", b"beta", b"usage"][index]


@pytest.mark.parametrize(
    ("order", "error"),
    [
        ([1, 0, 2, 3], "1 arrived when 0"),  # reordered
        ([0, 2, 3], "2 arrived when 1"),  # dropped
        ([0, 0, 1, 2, 3], "0 arrived again"),  # duplicated
        ([0, 1, 3], "3 arrived when 2"),  # the last chunk dropped before the end
    ],
)
def test_reordered_dropped_or_duplicated_frames_are_refused(order: list[int], error: str, aad: bytes) -> None:
    frames = _stream(aad, [b"a", b"b", b"c"])
    opener = AnswerOpener(KEY, aad=aad)
    with pytest.raises(SealError, match=error):
        for i in order:
            opener.open_next(frames[i])
    assert not opener.complete


def test_truncation_and_frames_after_the_end_are_refused(aad: bytes) -> None:
    frames = _stream(aad, [b"a", b"b"])
    opener = AnswerOpener(KEY, aad=aad)
    opener.open(frames[0])
    opener.open(frames[1])
    with pytest.raises(SealError, match="truncated after 2 frames"):
        opener.check_complete()
    assert opener.open_final(frames[2]) == b"usage"
    opener.check_complete()
    for late in (frames[2], frames[0], AnswerSealer(KEY, aad=aad).seal(b"x")):
        with pytest.raises(SealError, match="after the end"):
            opener.open_next(late)


def test_kinds_must_match_what_is_asked(aad: bytes) -> None:
    frames = _stream(aad, [b"a"])
    with pytest.raises(SealError, match="end marker came"):
        AnswerOpener(KEY, aad=aad).open(_stream(aad, [])[0])
    with pytest.raises(SealError, match="data frame"):
        AnswerOpener(KEY, aad=aad).open_final(frames[0])


def test_frames_of_another_answer_key_or_aad_are_refused(aad: bytes) -> None:
    first, retry = _stream(aad, [b"a", b"b"]), _stream(aad, [b"a", b"b"])  # a retry on another worker
    assert first[0] != retry[0]  # its own salt: never the same key stream
    opener = AnswerOpener(KEY, aad=aad)
    opener.open(first[0])
    with pytest.raises(SealError, match="frame 1 does not open"):
        opener.open(retry[1])  # spliced from the retry
    with pytest.raises(SealError, match="does not open"):
        AnswerOpener(bytes(32), aad=aad).open(first[0])
    with pytest.raises(SealError, match="does not open"):
        AnswerOpener(KEY, aad=aad + b"x").open(first[0])
    assert _open_all(AnswerOpener(KEY, aad=aad), retry) == [b"a", b"b", b"usage"]


def test_the_sealer_refuses_use_after_finish_and_bad_input(aad: bytes) -> None:
    sealer = AnswerSealer(KEY, aad=aad)
    sealer.finish()
    with pytest.raises(SealError, match="already finished"):
        sealer.seal(b"more")
    with pytest.raises(SealError, match="already finished"):
        sealer.finish()
    with pytest.raises(SealError, match="32 bytes"):
        AnswerSealer(b"short", aad=aad)
    with pytest.raises(SealError, match="bytes"):
        AnswerSealer(KEY, aad=aad).seal("text")  # type: ignore[arg-type]
