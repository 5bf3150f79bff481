"""normalize_address: every spelling of one wallet is one key; anything else is refused clearly."""

import base64
import binascii

import pytest

from cocoon.chain import (
    AddressError,
    ChainError,
    KeyPair,
    Wallet,
    address_key,
    check_address,
    check_optional_address,
    normalize_address,
    parse_address,
)

_HASH = bytes(range(32))
_RAW = f"0:{_HASH.hex()}"


def _friendly(*, bounceable: bool, testnet: bool, url_safe: bool, workchain: int = 0) -> str:
    tag = (0x11 if bounceable else 0x51) | (0x80 if testnet else 0)
    body = bytes([tag]) + workchain.to_bytes(1, "big", signed=True) + _HASH
    data = body + binascii.crc_hqx(body, 0).to_bytes(2, "big")
    return (base64.urlsafe_b64encode if url_safe else base64.b64encode)(data).decode()


@pytest.mark.parametrize("bounceable", [True, False])
@pytest.mark.parametrize("testnet", [True, False])
@pytest.mark.parametrize("url_safe", [True, False])
def test_every_user_friendly_spelling_is_one_key(bounceable: bool, testnet: bool, url_safe: bool) -> None:
    spelling = _friendly(bounceable=bounceable, testnet=testnet, url_safe=url_safe)
    assert normalize_address(spelling) == _RAW


def test_raw_spellings_are_one_key() -> None:
    assert normalize_address(_RAW.upper().replace("0X", "0x")) == _RAW
    assert normalize_address(f"  {_RAW}\n") == _RAW
    assert normalize_address(f"-1:{_HASH.hex()}") == f"-1:{_HASH.hex()}"
    assert normalize_address(_friendly(bounceable=True, testnet=False, url_safe=True, workchain=-1)) == (
        f"-1:{_HASH.hex()}"
    )


def test_a_real_wallet_spelled_by_pytoniq_is_one_key() -> None:
    address = Wallet(KeyPair.generate()).address
    spellings = {
        address.to_str(is_user_friendly=False),
        *(
            address.to_str(is_bounceable=b, is_test_only=t, is_url_safe=u)
            for b in (True, False)
            for t in (True, False)
            for u in (True, False)
        ),
    }
    assert len(spellings) > 4  # the url-safe and standard spellings differ only for some keys
    assert {normalize_address(s) for s in spellings} == {address.to_str(is_user_friendly=False)}
    assert parse_address(spellings.pop()) == address


_GOOD = _friendly(bounceable=True, testnet=False, url_safe=True)


@pytest.mark.parametrize(
    ("garbage", "says"),
    [
        ("", "not a TON address"),
        ("hello", "not a TON address"),
        (f"0:{_HASH.hex()[:-2]}", "not a TON address"),  # short hash (pytoniq would accept it)
        (f"0:{_HASH.hex()}00", "not a TON address"),
        (f"0:{'g' * 64}", "not a TON address"),
        (f"300:{_HASH.hex()}", "out of range"),
        (f"0:{_HASH.hex()}:1", "not a TON address"),
        (_GOOD[:-1] + ("A" if _GOOD[-1] != "A" else "B"), "checksum"),
        (_GOOD + "AAAA", "not a TON address"),  # trailing bytes (pytoniq would accept them)
        ("E" * 48, "checksum"),
        ("0:" + "0" * 62 + "\u0661\u0662", "not a TON address"),  # non-ASCII digits
    ],
)
def test_garbage_is_refused_with_a_clear_error(garbage: str, says: str) -> None:
    with pytest.raises(AddressError, match=says) as caught:
        normalize_address(garbage)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ChainError)


def test_unknown_tag_is_refused_even_with_a_valid_checksum() -> None:
    body = bytes([0x22, 0]) + _HASH
    data = body + binascii.crc_hqx(body, 0).to_bytes(2, "big")
    with pytest.raises(AddressError, match="unknown tag"):
        normalize_address(base64.urlsafe_b64encode(data).decode())


def test_mixed_alphabets_and_non_strings_are_refused() -> None:
    with pytest.raises(AddressError, match="mixes"):
        normalize_address("A" * 46 + "-+")
    with pytest.raises(AddressError, match="must be a string"):
        normalize_address(42)  # type: ignore[arg-type]


def test_error_message_does_not_echo_a_huge_input() -> None:
    with pytest.raises(AddressError) as caught:
        normalize_address("x" * 100_000)
    assert len(str(caught.value)) < 200


def test_check_address_keeps_the_spelling_and_refuses_garbage() -> None:
    assert check_address(_GOOD) == _GOOD
    assert check_optional_address("") == "" and check_optional_address(_RAW) == _RAW
    with pytest.raises(ValueError, match="not a TON address"):
        check_address("alice")


def test_address_key_normalises_addresses_and_keeps_labels() -> None:
    assert address_key(_GOOD) == address_key(_RAW.upper().replace("0X", "0x")) == _RAW
    assert address_key("worker-1") == "worker-1"
