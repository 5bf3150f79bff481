"""Every service's chain section is one ChainSettings: old `local_path` TOML loads, lite sections load,
and a bad owner or root address is a configuration error at load, not a refusal later."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cocoon.chain import KeyPair, LiteChain, Wallet, normalize_address, open_chain
from cocoon.chain.threaded import ThreadedLocalChain
from cocoon.client import ClientConfig
from cocoon.core.settings import load_config
from cocoon.errors import ConfigError
from cocoon.proxy import ProxyConfig
from cocoon.worker import WorkerConfig

WALLET = Wallet(KeyPair.from_seed(bytes(range(32)))).address
ROOT = WALLET.to_str(is_bounceable=False)  # any spelling will do
OWNER = WALLET.to_str(is_test_only=True)
KEY = base64.b64encode(KeyPair.from_seed(bytes(32)).public).decode()

SECTIONS = [  # (service, config model, chain section name)
    ("worker", WorkerConfig, "root"),
    ("proxy", ProxyConfig, "chain"),
    ("client", ClientConfig, "chain"),
]


def _toml(tmp_path: Path, service: str, sub: str, body: str, owner: str = OWNER) -> Path:
    path = tmp_path / f"{service}.toml"
    path.write_text(
        f'[{service}]\nowner_address = "{owner}"\n[{service}.{sub}]\nroot_address = "{ROOT}"\n{body}'
    )
    return path


@pytest.mark.parametrize(("service", "model", "sub"), SECTIONS)
async def test_an_old_local_path_section_opens_the_embedded_chain(tmp_path, service, model, sub) -> None:
    db = tmp_path / "chain" / "local.sqlite"
    config = load_config(model, _toml(tmp_path, service, sub, f'local_path = "{db}"\n'), section=service)
    settings = getattr(config, sub)
    assert settings.kind == "embedded" and settings.local_path == db
    chain = open_chain(settings)
    try:
        assert isinstance(chain, ThreadedLocalChain) and db.exists()  # LocalChain off the event loop
    finally:
        await chain.aclose()


@pytest.mark.parametrize(("service", "model", "sub"), SECTIONS)
def test_a_lite_section_loads_for_every_service(tmp_path, service, model, sub) -> None:
    servers = f'liteservers = [{{ host = "5.9.10.47", port = 19949, public_key = "{KEY}" }}]\n'
    config = load_config(model, _toml(tmp_path, service, sub, f'kind = "lite"\n{servers}'), section=service)
    assert isinstance(open_chain(getattr(config, sub)), LiteChain)


@pytest.mark.parametrize(("service", "model", "sub"), SECTIONS)
@pytest.mark.parametrize(
    ("owner", "root", "says"),
    [
        ("alice", ROOT, "not a TON address"),
        (OWNER[:-1] + ("A" if OWNER[-1] != "A" else "B"), ROOT, "checksum"),
        (OWNER, "0:1234", "not a TON address"),
    ],
)
def test_bad_addresses_are_config_errors_at_load(tmp_path, service, model, sub, owner, root, says) -> None:
    body = f'local_path = "{tmp_path / "c.sqlite"}"\n'
    path = _toml(tmp_path, service, sub, body, owner=owner)
    path.write_text(path.read_text().replace(ROOT, root))
    with pytest.raises(ConfigError, match=says):
        load_config(model, path, section=service)


def test_without_a_chain_owners_stay_free_form_labels() -> None:
    assert WorkerConfig(owner_address="worker-1").owner_address == "worker-1"
    assert ClientConfig(owner_address="c").owner_address == "c"
    assert normalize_address(OWNER) == normalize_address(ROOT) == WALLET.to_str(is_user_friendly=False)
