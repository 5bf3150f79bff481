"""ChainSettings: one connection section for every service; open_chain builds the chain it names."""

import base64
import json
import stat

import pytest
from pydantic import ValidationError

from cocoon.chain import ChainSettings, KeyPair, LiteChain, LiteServer, LocalChain, open_chain
from cocoon.chain.threaded import ThreadedLocalChain

_KEY = base64.b64encode(KeyPair.generate().public).decode()


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_embedded_chain_store_is_private(tmp_path) -> None:
    path = tmp_path / "new" / "chain" / "local.sqlite"
    chain = open_chain(ChainSettings(local_path=path))
    try:
        assert isinstance(chain, ThreadedLocalChain)  # LocalChain on a thread of its own
        assert await chain.now() > 0
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
        for sidecar in path.parent.glob("local.sqlite-*"):  # WAL / SHM take the database's mode
            assert _mode(sidecar) == 0o600
    finally:
        await chain.aclose()


def test_an_older_world_readable_store_is_tightened(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    path.touch(mode=0o644)
    path.chmod(0o644)
    LocalChain(path).close()
    assert _mode(path) == 0o600


def test_existing_local_path_sections_keep_working() -> None:
    settings = ChainSettings.model_validate({"local_path": "/tmp/x.sqlite"})
    assert settings.kind == "embedded" and str(settings.local_path) == "/tmp/x.sqlite"


def test_lite_from_a_global_config(tmp_path) -> None:
    config = tmp_path / "global.config.json"
    block = {"workchain": -1, "shard": -(2**63), "seqno": 0, "root_hash": _KEY, "file_hash": _KEY}
    server = {"ip": 84215045, "port": 19949, "id": {"@type": "pub.ed25519", "key": _KEY}}
    config.write_text(json.dumps({"liteservers": [server], "validator": {"init_block": block}}))
    assert isinstance(open_chain(ChainSettings(kind="lite", config_path=config)), LiteChain)


def test_lite_from_listed_liteservers() -> None:
    settings = ChainSettings.model_validate(
        {"kind": "lite", "liteservers": [{"host": "5.9.10.47", "port": 19949, "public_key": _KEY}]}
    )
    assert settings.liteservers == [LiteServer(host="5.9.10.47", port=19949, public_key=_KEY)]
    assert isinstance(open_chain(settings), LiteChain)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({}, "needs local_path"),
        ({"kind": "embedded", "local_path": "a", "config_path": "b"}, "need kind = 'lite'"),
        ({"kind": "lite"}, "exactly one of config_path or liteservers"),
        (
            {
                "kind": "lite",
                "config_path": "g.json",
                "liteservers": [{"host": "h", "port": 1, "public_key": _KEY}],
            },
            "exactly one",
        ),
        ({"kind": "lite", "config_path": "g.json", "local_path": "a"}, "local_path is for"),
        (
            {"kind": "lite", "liteservers": [{"host": "h", "port": 1, "public_key": _KEY}], "trust_level": 0},
            "init block",
        ),
        ({"kind": "lite", "liteservers": [{"host": "h", "port": 1, "public_key": "!!"}]}, "base64"),
        ({"kind": "lite", "liteservers": [{"host": "h", "port": 1, "public_key": "AAAA"}]}, "32-byte"),
        ({"kind": "lite", "liteservers": [{"host": "h", "port": 0, "public_key": _KEY}]}, "port"),
        ({"kind": "ton", "local_path": "a"}, "kind"),
        ({"local_path": "a", "url": "x"}, "url"),
    ],
)
def test_bad_sections_are_config_errors(section: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ChainSettings.model_validate(section)
