"""Sealed requests and answers open for the right worker, with the right aad, and only then."""

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
    routing_aad,
    seal_request,
)


@pytest.mark.parametrize("suite", list(Suite))
def test_every_recipient_opens_the_same_body_and_key(
    suite: Suite, pairs: dict[Suite, list[SealKeyPair]], aad: bytes
) -> None:
    keys = pairs[suite]
    sealed = seal_request(b"the prompt", [k.recipient(f"w{i}") for i, k in enumerate(keys)], aad=aad)
    data = sealed.to_bytes()
    assert b"the prompt" not in data
    assert SealedRequest.from_bytes(data).key_ids == tuple(k.key_id for k in keys)
    for key in keys:
        opened = open_request(data, key, aad=aad)
        assert opened.body == b"the prompt"
        assert opened.content_key == sealed.content_key


def test_mixed_suites_in_one_request(pairs: dict[Suite, list[SealKeyPair]], aad: bytes) -> None:
    hybrid, classical = pairs[Suite.HYBRID][0], pairs[Suite.CLASSICAL][0]
    data = seal_request(b"x", [hybrid.recipient(), classical.recipient()], aad=aad).to_bytes()
    assert open_request(data, hybrid, aad=aad).body == open_request(data, classical, aad=aad).body == b"x"


@pytest.mark.parametrize("suite", list(Suite))
def test_a_key_not_sealed_to_is_refused(
    suite: Suite, pairs: dict[Suite, list[SealKeyPair]], aad: bytes
) -> None:
    data = seal_request(b"x", [pairs[suite][0].recipient()], aad=aad).to_bytes()
    with pytest.raises(SealError, match="not sealed to key"):
        open_request(data, pairs[suite][1], aad=aad)


def test_another_aad_is_refused(pairs: dict[Suite, list[SealKeyPair]], aad: bytes) -> None:
    key = pairs[Suite.HYBRID][0]
    data = seal_request(b"x", [key.recipient()], aad=aad).to_bytes()
    other = routing_aad("/v1/chat/completions", "qwen", 65, "env-1")  # max_tokens changed on the way
    with pytest.raises(SealError, match="wrapped content key does not open"):
        open_request(data, key, aad=other)


def test_answer_stream_round_trip(aad: bytes) -> None:
    key = b"k" * 32
    sealer, opener = AnswerSealer(key, aad=aad), AnswerOpener(key, aad=aad)
    frames = [sealer.seal(b"one"), sealer.seal(b""), sealer.seal(b"three")]
    end = sealer.finish(b'{"usage":1}')
    assert [opener.open(f) for f in frames] == [b"one", b"", b"three"]
    assert not opener.complete
    assert opener.open_final(end) == b'{"usage":1}'
    assert opener.complete and opener.frames == 4 == sealer.frames


def test_parsed_request_has_no_content_key(pairs: dict[Suite, list[SealKeyPair]], aad: bytes) -> None:
    data = seal_request(b"x", [pairs[Suite.CLASSICAL][0].recipient()], aad=aad).to_bytes()
    parsed = SealedRequest.from_bytes(data)
    assert parsed.to_bytes() == data
    with pytest.raises(SealError, match="content key"):
        _ = parsed.content_key


def test_answer_frames_hide_chunk_lengths_within_a_pad_block(aad: bytes) -> None:
    key = b"k" * 32
    sealer = AnswerSealer(key, aad=aad)
    sealer.seal(b"first")  # frame 0 also carries the salt
    sizes = {len(sealer.seal(b"t" * n)) for n in range(64)}
    assert sizes == {6 + 64 + 16}  # header, one pad block, tag
    assert len(sealer.seal(b"t" * 64)) == 6 + 128 + 16
    plain = AnswerSealer(key, aad=aad, pad_to=1)
    plain.seal(b"")
    assert len(plain.seal(b"abc")) == 6 + 3 + 1 + 16
    for bad in (0, 4097, True):
        with pytest.raises(SealError, match="pad_to"):
            AnswerSealer(key, aad=aad, pad_to=bad)


def test_padding_without_its_marker_is_refused() -> None:
    from cocoon.e2ee.stream import _pad, _unpad

    assert _unpad(_pad(b"ab\x00\x80\x00", 16), 0) == b"ab\x00\x80\x00"  # zeros and 0x80 inside survive
    with pytest.raises(SealError, match="padding marker"):
        _unpad(b"ab\x00\x00", 3)


@pytest.mark.parametrize("suite", list(Suite))
def test_derived_keys_are_deterministic_per_seed_and_suite(suite: Suite) -> None:
    seed = bytes(range(32))
    one, again = SealKeyPair.derive(suite, seed), SealKeyPair.derive(suite, seed)
    assert one.public_bytes == again.public_bytes and one.key_id == again.key_id
    assert SealKeyPair.derive(suite, seed[::-1]).key_id != one.key_id
    other = Suite.CLASSICAL if suite is Suite.HYBRID else Suite.HYBRID
    assert SealKeyPair.derive(other, seed).key_id != one.key_id
    data = seal_request(b"x", [one.recipient()], aad=b"")
    assert open_request(data.to_bytes(), again, aad=b"").content_key == data.content_key
    with pytest.raises(SealError, match="at least 32"):
        SealKeyPair.derive(suite, seed[:31])
    assert "key_id=" in repr(one) and one.public_bytes.hex() not in repr(one.recipient("w"))


def test_routing_aad_is_canonical_and_unambiguous() -> None:
    base = routing_aad("/v1/chat/completions", "m", 16, "id")
    assert base == routing_aad("/v1/chat/completions", "m", 16, "id")
    changed = [
        routing_aad("/v1/completions", "m", 16, "id"),
        routing_aad("/v1/chat/completions", "m2", 16, "id"),
        routing_aad("/v1/chat/completions", "m", None, "id"),
        routing_aad("/v1/chat/completions", "m", 16, "id2"),
        routing_aad("/v1/chat/completions", 'm",16,"i', 0, "d"),  # a field cannot run into the next
    ]
    assert len({base, *changed}) == 6
    for bad in ((1, "m", 1, "i"), ("e", "m", -1, "i"), ("e", "m", True, "i"), ("e", "m", 1.5, "i")):
        with pytest.raises(SealError):
            routing_aad(*bad)  # type: ignore[arg-type]
