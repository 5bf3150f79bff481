import pytest

from cocoon.chain import ChainError, KeyPair, Wallet


def test_key_sources():
    sealed = bytes(range(32))
    a = KeyPair.from_sealed_key(sealed)
    assert a == KeyPair.from_sealed_key(sealed)  # stable across restarts
    assert a != KeyPair.from_sealed_key(sealed, "other purpose")
    words = KeyPair.new_mnemonic()
    assert len(words) == 24
    assert KeyPair.from_mnemonic(words) == KeyPair.from_mnemonic(words)
    with pytest.raises(ChainError):
        KeyPair.from_mnemonic(["nope"] * 24)
    with pytest.raises(ChainError):
        KeyPair.from_seed(b"short")
    with pytest.raises(ChainError):
        KeyPair.from_sealed_key(b"x")
    assert Wallet(a).address != Wallet(a, subwallet=1).address
