"""LiteChain against recorded liteserver answers (recorded from LocalChain: no network here)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pytoniq_core import Address, Cell

from cocoon.chain import ChainError, LiteChain, fetch_root_config
from cocoon.chain.litechain import shard_account_from_boc

REC = json.loads((Path(__file__).parent / "data" / "recorded_root.json").read_text())
ROOT = Address(REC["root_address"])


class Recorded:
    def __init__(self) -> None:
        self.started = self.closed = False
        self.sent: list[bytes] = []

    async def start_up(self) -> None:
        self.started = True

    async def close_all(self) -> None:
        self.closed = True

    async def raw_get_account_state(self, address):
        if address == ROOT:
            return shard_account_from_boc(base64.b64decode(REC["root_shard_account_boc64"]))
        return None, None

    async def run_get_method(self, address, method, stack):
        if method == "get_root_version":
            return [REC["get_root_version"]]
        raise RuntimeError("method not recorded")

    async def raw_send_message(self, message: bytes) -> None:
        self.sent.append(message)

    async def get_transactions(self, address, count):
        return [Cell.one_from_boc(base64.b64decode(b)) for b in REC["root_transactions_boc64"][:count]]


async def test_root_config_through_litechain():
    client = Recorded()
    async with LiteChain(client, clock=lambda: 1_800_000_000.0) as chain:
        cfg = await fetch_root_config(chain, ROOT)
        assert cfg.registered_proxies == ((1, "127.0.0.1:8800"),)
        assert cfg.price_per_token == 1000
        assert cfg.models == {b"\x03" * 32: "model-3"}
        assert await chain.run_get_method(ROOT, "get_root_version") == [cfg.version]
        txs = await chain.get_transactions(ROOT, 5)
        assert txs and all(t.address == ROOT for t in txs)
        assert (await chain.get_account(Address("0:" + "00" * 32))).status == "nonexist"
        assert await chain.send_external(Cell.empty()) == []
        assert await chain.now() == 1_800_000_000
        with pytest.raises(ChainError):
            await chain.run_get_method(ROOT, "nope")
    assert client.started and client.closed
    with pytest.raises(ChainError):
        await chain.get_account(ROOT)


def test_from_config_errors(tmp_path):
    with pytest.raises(ChainError):
        LiteChain.from_config(tmp_path / "missing.json")
    (tmp_path / "g.json").write_text('{"liteservers": []}')
    with pytest.raises(ChainError, match="no liteservers"):
        LiteChain.from_config(tmp_path / "g.json")


def _global_config(key_b64: str) -> dict:
    zero = {
        "workchain": -1,
        "shard": -9223372036854775808,
        "seqno": 0,
        "root_hash": "A" * 43 + "=",
        "file_hash": "A" * 43 + "=",
    }
    return {
        "liteservers": [{"ip": 2130706433, "port": 1, "id": {"@type": "pub.ed25519", "key": key_b64}}],
        "validator": {
            "@type": "validator.config.global",
            "zero_state": zero,
            "init_block": zero,
            "hardforks": [],
        },
    }


def test_from_config_builds_failover_peers(tmp_path):
    pytest.importorskip("pytoniq")
    from cocoon.chain import KeyPair

    good = tmp_path / "global.config.json"
    good.write_text(json.dumps(_global_config(base64.b64encode(KeyPair.generate().public).decode())))
    chain = LiteChain.from_config(good)
    # one pytoniq LiteClient per listed server behind LitePeers (failover); built, not started
    assert type(chain._client).__name__ == "LitePeers" and len(chain._client._clients) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_global_config("not base64!")))
    with pytest.raises(ChainError, match="bad global config"):
        LiteChain.from_config(bad)
