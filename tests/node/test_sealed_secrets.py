"""Node secrets from the seal service: derived from what it releases to the measured image (image +
TCB + key version), stable across restarts, never on disk; the seal server runs as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cocoon import tee
from cocoon.core.keyfile import is_sealed, load_or_create_seed, sealed_seed, unseal_home
from cocoon.errors import ConfigError
from cocoon.node import NodeTrust, TeeSettings
from cocoon.node.secrets import open_node_secrets, seal_address
from cocoon.tee.seal import sim_seal_server_thread
from cocoon.tee.sealing import SealAddress, node_key

IMAGE = {"image": "cocoon-client"}


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@pytest.fixture
def sock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seal") / "seal.sock"  # unix socket paths must stay short


@pytest.fixture
def seal_server(tmp_path: Path, sock: Path) -> Iterator[None]:
    with sim_seal_server_thread(tee.sim_platform(tmp_path), sock):
        yield


def _settings(tmp_path: Path, sock: Path, **kw: object) -> TeeSettings:
    return TeeSettings(sim_home=tmp_path, seal_address=f"unix:{sock}", **kw)  # type: ignore[arg-type]


@pytest.mark.usefixtures("seal_server")
async def test_sealed_keys_are_stable_bound_to_the_image_and_versioned(tmp_path: Path, sock: Path) -> None:
    home = tmp_path / "client"
    first = open_node_secrets(_settings(tmp_path, sock), home=home, role="client", measurements=IMAGE)
    again = open_node_secrets(_settings(tmp_path, sock), home=home, role="client", measurements=IMAGE)
    assert first.sealed and _raw(first.identity_key) == _raw(again.identity_key)  # a restart
    wallet = load_or_create_seed(home / "wallet.key")
    assert load_or_create_seed(home / "wallet.key") == wallet and not (home / "wallet.key").exists()
    assert is_sealed(home / "wallet.key") and not is_sealed(tmp_path / "elsewhere.key")

    other_image = open_node_secrets(
        _settings(tmp_path, sock),
        home=tmp_path / "c2",
        role="client",
        measurements={"image": "cocoon-client-v2"},
    )
    rotated = open_node_secrets(
        _settings(tmp_path, sock, key_version=2), home=tmp_path / "c3", role="client", measurements=IMAGE
    )
    keys = {_raw(first.identity_key), _raw(other_image.identity_key), _raw(rotated.identity_key)}
    assert len(keys) == 3
    seeds = {
        wallet,
        load_or_create_seed(tmp_path / "c2" / "wallet.key"),
        load_or_create_seed(tmp_path / "c3" / "wallet.key"),
    }
    assert len(seeds) == 3


def test_derivations_agree_and_separate_purposes() -> None:
    root = b"\x11" * 32
    assert sealed_seed(root, "wallet.key") == node_key(root, "seed/wallet.key")
    assert (
        node_key(root, "tls-identity")
        != node_key(root, "seed/wallet.key")
        != sealed_seed(b"\x12" * 32, "wallet.key")
    )


@pytest.mark.usefixtures("seal_server")
async def test_a_plaintext_key_in_a_sealed_home_is_refused(tmp_path: Path, sock: Path) -> None:
    home = tmp_path / "proxy"
    home.mkdir()
    (home / "chain-wallet.key").write_text("00" * 32)
    open_node_secrets(
        _settings(tmp_path, sock), home=home, role="proxy", measurements={"image": "cocoon-proxy"}
    )
    with pytest.raises(ConfigError, match="plaintext key"):
        load_or_create_seed(home / "chain-wallet.key")
    unseal_home(home)
    assert load_or_create_seed(home / "chain-wallet.key") == bytes(32)


@pytest.mark.usefixtures("seal_server")
async def test_node_trust_takes_its_identity_from_the_seal_service(tmp_path: Path, sock: Path) -> None:
    settings = _settings(tmp_path, sock)
    one = NodeTrust(settings, home=tmp_path / "w", role="worker")
    two = NodeTrust(settings, home=tmp_path / "w", role="worker")
    assert one.identity.public_key == two.identity.public_key  # same image, same key after a restart
    plain = NodeTrust(TeeSettings(sim_home=tmp_path), home=tmp_path / "w2", role="worker")
    assert plain.identity.public_key != one.identity.public_key


def test_seal_addresses(tmp_path: Path) -> None:
    assert SealAddress.parse("vsock:2:12345").vsock == (2, 12345)
    assert str(SealAddress.parse("unix:/run/seal.sock")) == "unix:/run/seal.sock"
    for bad in ("tcp:1", "vsock:x:1", "vsock:2:0", "unix:"):
        with pytest.raises(ValueError):
            SealAddress.parse(bad)
    assert seal_address(TeeSettings()) is None  # sim without a seal server: unsealed, as before
    assert seal_address(TeeSettings(backend="tdx")) == SealAddress(vsock=(2, 12345))  # tdx always seals
    assert seal_address(TeeSettings(backend="tdx", seal_address="off")) is None


async def test_an_unreachable_seal_service_stops_the_node(tmp_path: Path, sock: Path) -> None:
    with pytest.raises(tee.SealError, match="unreachable"):
        open_node_secrets(_settings(tmp_path, sock), home=tmp_path / "x", role="client", measurements=IMAGE)


@pytest.fixture
def seal_process(tmp_path: Path, sock: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "cocoon.cli.main",
        "tee",
        "--home",
        str(tmp_path),
        "seal-server",
        "--socket",
        str(sock),
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cocoon_tee_seal_server_runs_as_its_own_process(
    tmp_path: Path, sock: Path, seal_process: subprocess.Popen[str]
) -> None:
    assert seal_process.stdout is not None
    line = seal_process.stdout.readline()  # printed once the socket listens
    assert f"unix:{sock}" in line, line
    secrets = open_node_secrets(
        _settings(tmp_path, sock), home=tmp_path / "n", role="client", measurements=IMAGE
    )
    assert secrets.sealed
