"""The small pieces of chain money: key files, the client's owner proof, the proxy's chain announce."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.chain import KeyPair, Wallet
from cocoon.client.contract import ProxyChainInfo
from cocoon.client.errors import ClientChainError
from cocoon.core.keyfile import load_or_create_seed, load_seed
from cocoon.errors import ConfigError
from cocoon.node.ownership import make_owner_proof, verify_owner_proof


def _address(public_key: bytes) -> str:
    return str(Wallet(KeyPair(bytes(32), public_key)).address.to_str())  # type: ignore[no-untyped-call]


def test_key_file_is_made_once_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "wallet.key"
    seed = load_or_create_seed(path)
    assert len(seed) == 32 and load_or_create_seed(path) == seed == load_seed(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["wallet.key"]  # no temporary file left


@pytest.mark.parametrize("content", ["", "zz", "00" * 31, "00" * 33])
def test_malformed_key_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_or_create_seed(path)


def test_owner_proof_binds_the_tls_key_to_the_wallet() -> None:
    wallet, other = KeyPair.generate(), KeyPair.generate()
    tls = KeyPair.generate().public
    proof = make_owner_proof(wallet.sign, wallet.public, tls)
    owner = _address(wallet.public)
    assert verify_owner_proof(proof, tls, _address, owner)
    assert not verify_owner_proof(proof, KeyPair.generate().public, _address, owner)  # another session
    assert not verify_owner_proof(proof, tls, _address, _address(other.public))  # another wallet named
    forged = make_owner_proof(other.sign, wallet.public, tls)  # signed by a key that is not the wallet's
    assert not verify_owner_proof(forged, tls, _address, owner)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)


@given(proof=_json, tls=st.binary(max_size=40))
def test_owner_proof_check_never_raises_on_garbage(proof: Any, tls: bytes) -> None:
    assert verify_owner_proof(proof, tls, _address, "EQ" + "A" * 46) is False


@given(
    info=st.one_of(
        _json,
        st.fixed_dictionaries(
            {
                "root": st.text(max_size=60),
                "proxy_contract": st.text(max_size=60),
                "signing_key": st.text(max_size=70),
            }
        ),
    )
)
def test_proxy_chain_announce_parses_or_refuses_cleanly(info: Any) -> None:
    try:
        parsed = ProxyChainInfo.from_announce(info)
    except ClientChainError:
        return
    assert len(parsed.signing_key) == 32


def test_proxy_chain_announce_round_trips() -> None:
    key = KeyPair.generate().public
    root, proxy_sc = _address(KeyPair.generate().public), _address(KeyPair.generate().public)
    parsed = ProxyChainInfo.from_announce(
        {"root": root, "proxy_contract": proxy_sc, "signing_key": key.hex()}
    )
    assert parsed.signing_key == key and parsed.root.to_str() == root  # type: ignore[no-untyped-call]
