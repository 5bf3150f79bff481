"""`cocoon chain root history`: every accepted change to the root's allowlists and parameters, from
its transactions, oldest first, with the time in ISO, the op in words, the argument and the whole
transaction hash; refused attempts changed nothing and are not listed. The same list comes back
through a liteserver (LiteChain's transaction listing)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.chain import LocalChain, Op, TransactionFailed, WalletClient, parse_address, send_root_op
from cocoon.chain.liteserver import DevLiteServer, ServerKey, write_global_config
from cocoon.chain.liteserver.globalconfig import liteserver_entry
from cocoon.cli.chain_cmd import app
from cocoon.cli.root_history import root_changes

runner = CliRunner()
IMAGE, MODEL = "ab" * 32, "cd" * 32


def ok(home: Path, *args: str) -> dict:
    result = runner.invoke(app, ["--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("history")
    ok(home, "local", "start")
    ok(home, "wallet", "new", "stranger", "--fund", "5")
    ok(home, "root", "deploy")
    ok(home, "root", "allow-image", IMAGE, "--kind", "proxy")
    ok(home, "root", "allow-model", "tiny", "--hash", MODEL)
    ok(home, "root", "add-proxy", "10.0.0.7:8801")
    ok(home, "root", "set-params", "--price", "25")
    ok(home, "root", "remove-proxy", "10.0.0.7:8801")
    ok(home, "root", "allow-image", IMAGE, "--kind", "proxy", "--remove")
    ok(home, "root", "set-class", "batch", "--max-retries", "1")
    _send_as_stranger(home)
    return home


def _send_as_stranger(home: Path) -> None:
    """A non-owner's remove-model reaches the root and is refused there (exit 401): not a change."""
    from cocoon.cli import chain_cmd

    ctx = chain_cmd.Ctx(home, json=True)
    wallet = chain_cmd._load_wallet(ctx, "stranger")
    root = parse_address(ctx.state()["root"])

    async def go() -> None:
        chain = LocalChain(home / "chain" / "local.sqlite")
        try:
            with pytest.raises(TransactionFailed):
                await send_root_op(
                    WalletClient(chain, wallet), root, Op.DEL_MODEL_TYPE, hash=bytes.fromhex(MODEL)
                )
        finally:
            chain.close()

    asyncio.run(go())


def test_history_lists_every_accepted_change_in_order(governed: Path) -> None:
    history = ok(governed, "root", "history")
    changes = history["changes"]
    assert [c["op"] for c in changes] == [
        "deploy",
        "allow proxy image",
        "allow model",
        "register proxy",
        "change parameters",
        "unregister proxy",
        "remove proxy image",
        "set service class",
    ]  # the stranger's refused remove-model is not there
    assert changes[1]["argument"] == IMAGE and changes[6]["argument"] == IMAGE
    assert changes[2]["argument"] == f"{MODEL} as 'tiny'"
    assert changes[3]["argument"] == "10.0.0.7:8801"
    assert "price/token 25" in changes[4]["argument"]
    assert changes[5]["argument"].startswith("seqno ")
    assert changes[7]["argument"].startswith("name batch, ") and "max_retries 1" in changes[7]["argument"]
    chain = LocalChain(governed / "chain" / "local.sqlite")
    try:
        root = parse_address(history["root"])
        txs = {tx.hash.hex(): tx for tx in asyncio.run(chain.get_transactions(root, limit=100))}
    finally:
        chain.close()
    for change in changes:
        tx = txs[change["transaction"]]  # the whole hash of a root transaction
        assert tx.success and change["unix_time"] == tx.now
        assert change["time"].endswith("Z") and change["time"][:4] >= "2024"
    assert [c["lt"] for c in changes] == sorted(c["lt"] for c in changes)


@pytest.mark.parametrize("width", [80, 200])
def test_history_shows_whole_hashes_at_any_width(
    governed: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from cocoon.cli import chain_cmd

    monkeypatch.setattr(chain_cmd, "out", Console(width=width))
    result = runner.invoke(app, ["--home", str(governed), "root", "history"])
    assert result.exit_code == 0, result.output
    hashes = [c["transaction"] for c in ok(governed, "root", "history")["changes"]]
    assert all(h in result.output for h in hashes)  # one unbroken word each
    assert "register proxy" in result.output and "change parameters" in result.output
    assert ("┃ transaction" in result.output) == (width == 200)  # the table where it fits


async def test_history_through_a_liteserver_equals_the_embedded_one(governed: Path, tmp_path: Path) -> None:
    server = DevLiteServer(governed / "chain" / "local.sqlite", ServerKey(os.urandom(32)))
    await server.start()
    try:
        config = tmp_path / "global.config.json"
        write_global_config(config, liteserver_entry("127.0.0.1", server.port, server.key.public))
        lite = ["--lite-config", str(config), "--dev-chain"]
        over_lite = await asyncio.to_thread(ok, governed, *lite, "root", "history")
    finally:
        await server.aclose()
    embedded = await asyncio.to_thread(ok, governed, "root", "history")
    assert over_lite == embedded and len(embedded["changes"]) == 8


def test_no_transactions_no_changes() -> None:
    assert root_changes([]) == []
