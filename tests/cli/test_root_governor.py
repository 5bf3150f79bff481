"""Root governance from the CLI: typos and no-ops are refused before anything is sent, contract
refusals read as sentences, and every change shows its transaction hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.chain import Address, LocalChain, fetch_root_config
from cocoon.chain.exit_codes import explain_exit
from cocoon.cli.chain_cmd import app

runner = CliRunner()


def invoke(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), "--json", *args])


def ok(home: Path, *args: str) -> dict:
    result = invoke(home, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def refused(home: Path, *args: str) -> str:
    """The one-line error of a refused command, after checking nothing reached the chain."""
    before = _tx_count(home)
    result = invoke(home, *args)
    assert result.exit_code == 1, result.output
    assert _tx_count(home) == before, "a refused command sent a transaction"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def _tx_count(home: Path) -> int:
    db = home / "chain" / "local.sqlite"
    if not db.exists():
        return 0
    chain = LocalChain(db)
    try:
        return chain.transaction_count()
    finally:
        chain.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("governor")
    ok(h, "local", "start")
    ok(h, "root", "deploy")
    return h


def test_hashes_are_exactly_64_hex(home: Path) -> None:
    assert "exactly 64 hex digits, got 63" in refused(home, "root", "allow-image", "a" * 63)
    assert "exactly 64 hex digits" in refused(home, "root", "allow-image", "g" * 64)
    assert "exactly 64 hex digits, got 63" in refused(home, "root", "allow-model", "m", "--hash", "b" * 63)
    # a hash typed where the name goes would be hashed into a new model id
    assert "looks like a hash" in refused(home, "root", "allow-model", "c" * 63)


def test_each_change_prints_its_transaction_hash(home: Path) -> None:
    row = ok(home, "root", "allow-image", "ab" * 32, "--kind", "proxy")
    assert row["change"] == f"allow proxy image {'ab' * 32}" and len(row["transaction"]) == 64
    root = Address(ok(home, "root", "show")["address"])
    chain = LocalChain(home / "chain" / "local.sqlite")
    try:
        hashes = {tx.hash.hex() for tx in asyncio.run(chain.get_transactions(root, limit=50))}
    finally:
        chain.close()
    assert row["transaction"] in hashes
    table = runner.invoke(app, ["--home", str(home), "root", "allow-model", "tiny", "--hash", "cd" * 32])
    assert table.exit_code == 0 and "transaction" in table.output


def test_duplicates_and_missing_entries_are_refused_before_sending(home: Path) -> None:
    ok(home, "root", "allow-image", "ee" * 32)
    assert "allows worker image" in refused(home, "root", "allow-image", "ee" * 32)
    assert "nothing to remove" in refused(home, "root", "allow-image", "ef" * 32, "--remove")
    assert "nothing to remove" in refused(home, "root", "allow-model", "x", "--hash", "01" * 32, "--remove")


def test_proxy_addresses_are_checked_deduplicated_and_removable(home: Path) -> None:
    assert "HOST:PORT" in refused(home, "root", "add-proxy", "not-an-address")
    assert "HOST:PORT" in refused(home, "root", "add-proxy", "10.0.0.1:99999")
    ok(home, "root", "add-proxy", "10.0.0.1:8801")
    assert "registered already" in refused(home, "root", "add-proxy", "10.0.0.1:8801")
    row = ok(home, "root", "remove-proxy", "10.0.0.1:8801")
    assert row["change"].startswith("unregister proxy 10.0.0.1:8801") and len(row["transaction"]) == 64
    assert ok(home, "root", "show")["registered_proxies"] == []
    assert "not registered" in refused(home, "root", "remove-proxy", "10.0.0.1:8801")


def test_a_contract_refusal_reads_as_a_sentence(home: Path) -> None:
    ok(home, "wallet", "new", "mallory", "--fund", "5")
    result = invoke(home, "root", "allow-image", "12" * 32, "--wallet", "mallory")
    assert result.exit_code == 1
    assert "the root refused to allow worker image" in result.output
    assert "only its owner may change it) (exit code 401)" in " ".join(result.output.split())
    assert explain_exit(411) == "the contract holds no such entry (exit code 411)"
    assert explain_exit(7) == "the contract refused it with exit code 7"


def test_deploy_on_a_fresh_home_points_to_local_start(tmp_path: Path) -> None:
    line = refused(tmp_path, "root", "deploy")
    assert "cocoon chain local start" in line and "wallet new" not in line


def test_root_init_makes_a_governed_local_root(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.Q8.gguf"
    weights.write_bytes(b"not really weights")
    home = tmp_path / "home"
    out = ok(home, "root", "init", "--model", str(weights), "--network-home", str(tmp_path / "net"))
    assert [c["change"].split()[1] for c in out["changes"]] == ["proxy", "worker", "model"]
    assert all(len(c["transaction"]) == 64 for c in out["changes"])
    show = ok(home, "root", "show")
    assert show["address"] == out["root"] and len(show["proxy_image_hashes"]) == 1
    assert len(show["worker_image_hashes"]) == 1 and list(show["models"].values()) == ["tiny"]
    assert hashlib.sha256(b"tiny").hexdigest() not in show["models"]
    assert "exists already" in refused(home, "root", "init", "--model", str(weights))


def test_a_proxy_with_separate_worker_and_client_addresses(home: Path) -> None:
    row = ok(home, "root", "add-proxy", "10.0.0.2:8801", "--client-address", "10.0.0.2:8802")
    assert row["change"] == "register proxy 10.0.0.2:8801 10.0.0.2:8802"
    assert "HOST:PORT" in refused(home, "root", "add-proxy", "10.0.0.3:1", "--client-address", "nope")
    # either address of a registered entry is taken
    assert "registered already" in refused(home, "root", "add-proxy", "10.0.0.2:8802")
    root = Address(ok(home, "root", "show")["address"])
    chain = LocalChain(home / "chain" / "local.sqlite")
    try:
        entries = asyncio.run(fetch_root_config(chain, root)).proxy_entries
    finally:
        chain.close()
    assert [(e.worker_address, e.client_address) for e in entries] == [("10.0.0.2:8801", "10.0.0.2:8802")]
    ok(home, "root", "remove-proxy", "10.0.0.2:8802")  # by its client address
    assert ok(home, "root", "show")["registered_proxies"] == []
