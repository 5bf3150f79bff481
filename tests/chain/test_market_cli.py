"""The market commands: the root's classes and collateral, its code upgrade, a worker owner's stake.
Bad input is refused before anything is sent; what is sent shows up on chain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cocoon.chain import KeyPair, LocalChain, Wallet, parse_address, parse_worker_state, worker_contract
from cocoon.chain import network as net
from cocoon.cli.main import app

runner = CliRunner()
ROOT_BUILD = Path(net.__file__).parent / "contracts" / "build" / "root.json"


def invoke(home: Path, *args: str):
    return runner.invoke(app, ["--json", "chain", "--home", str(home), *args])


def ok(home: Path, *args: str) -> dict:
    result = invoke(home, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@contextlib.contextmanager
def local_chain(path: Path) -> Iterator[LocalChain]:
    chain = LocalChain(path)
    try:
        yield chain
    finally:
        chain.close()


def tx_count(home: Path) -> int:
    with local_chain(home / "chain" / "local.sqlite") as chain:
        return chain.transaction_count()


def worker_owner(home: Path, tmp_path: Path) -> tuple[Any, Path]:
    """A new worker owner (its wallet seed in the worker's home) and a worker.toml naming the local
    chain and root."""
    root = ok(home, "root", "show")["address"]
    key = KeyPair.generate()
    owner = Wallet(key).address
    worker_home = tmp_path / "worker"
    worker_home.mkdir()
    key_file = worker_home / "wallet.key"
    key_file.write_text(key.seed.hex())
    os.chmod(key_file, 0o600)
    toml = tmp_path / "worker.toml"
    toml.write_text(
        f'[worker]\nhome = "{worker_home}"\nowner_address = "{owner.to_str()}"\n'
        f'[worker.root]\nkind = "embedded"\nlocal_path = "{home / "chain" / "local.sqlite"}"\n'
        f'root_address = "{root}"\n'
    )
    return owner, toml


def refused(home: Path, *args: str) -> str:
    before = tx_count(home)
    result = invoke(home, *args)
    assert result.exit_code == 1, result.output
    assert tx_count(home) == before, "a refused command sent a transaction"
    return result.output


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("market")
    ok(h, "local", "start")
    ok(h, "root", "deploy")
    return h


def test_market_shows_defaults_then_what_the_owner_sets(home: Path) -> None:
    m = ok(home, "root", "market")
    assert m["service_classes_held"] is False and set(m["service_classes"]) == {"premium", "elastic"}
    assert m["collateral_held"] is False and m["dispute_window_s"] == 3600
    args = [
        "--price-multiplier",
        "2500",
        "--ttft-ms",
        "700",
        "--min-tokens-per-s",
        "30",
        "--max-retries",
        "3",
    ]
    done = ok(home, "root", "set-class", "gold", *args, "--min-success-permille", "990")
    assert done["op"] == "set_service_class" and len(done["transaction"]) == 64
    assert "nothing to change" in refused(
        home, "root", "set-class", "gold", *args, "--min-success-permille", "990"
    )
    assert "must match" in refused(home, "root", "set-class", "Gold")
    assert "max_retries" in refused(home, "root", "set-class", "x", "--max-retries", "17")
    assert "nothing to remove" in refused(home, "root", "remove-class", "elastic")
    ok(
        home,
        "root",
        "set-collateral",
        "--min-stake",
        "2",
        "--dispute-window",
        "600",
        "--max-slash-permille",
        "500",
    )
    assert "max_slash_permille" in refused(home, "root", "set-collateral", "--max-slash-permille", "1001")
    m = ok(home, "root", "market")
    assert m["service_classes"] == {
        "gold": {
            "price_multiplier": 2500,
            "target_ttft_ms": 700,
            "min_tokens_per_s": 30,
            "max_retries": 3,
            "min_success_rate_permille": 990,
        }
    }
    assert (m["min_worker_stake_nano"], m["dispute_window_s"], m["max_slash_permille"]) == (
        2 * net.TON,
        600,
        500,
    )
    ok(home, "root", "remove-class", "gold")
    assert ok(home, "root", "market")["service_classes_held"] is False


def test_upgrade_code_checks_files_and_the_migration(home: Path, tmp_path: Path) -> None:
    version = ok(home, "root", "show")["version"]
    done = ok(home, "root", "upgrade-code", str(ROOT_BUILD))
    assert done["version"] == version + 1 and "re-install" in done["change"]
    junk = tmp_path / "junk.boc"
    junk.write_bytes(b"not a boc")
    assert "neither a BOC" in refused(home, "root", "upgrade-code", str(junk))
    stale = tmp_path / "stale.boc"
    from cocoon.chain._ton import begin_cell

    owner = parse_address(ok(home, "root", "show")["owner"])
    stale.write_bytes(begin_cell().store_address(owner).store_uint(version, 32).end_cell().to_boc())
    assert "must be" in refused(home, "root", "upgrade-code", str(ROOT_BUILD), "--migration", str(stale))
    ok(home, "wallet", "new", "stranger")
    # refused before sending (the contract's own 401 for a stranger is tested in tests/chain)
    line = refused(home, "root", "upgrade-code", str(ROOT_BUILD), "--wallet", "stranger")
    assert "is not the root owner" in line and "only the owner upgrades" in line


def test_worker_stake_from_the_owner_wallet(home: Path, tmp_path: Path) -> None:
    owner, toml = worker_owner(home, tmp_path)
    chain_path = home / "chain" / "local.sqlite"
    proxy_key = KeyPair.generate().public.hex()
    proxy_sc = "0:" + "77" * 32
    cmd = [
        "--json",
        "worker",
        "stake",
        "3",
        "--proxy-sc",
        proxy_sc,
        "--proxy-key",
        proxy_key,
        "--config",
        str(toml),
    ]
    poor = runner.invoke(app, cmd)
    assert poor.exit_code == 1 and "holds less than" in poor.output
    with local_chain(chain_path) as chain:
        asyncio.run(chain.faucet(owner, 10 * net.TON))
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows["stake_nano"] == 3 * net.TON and rows["may_serve"] is True  # 2 TON needed (set above)
    root = ok(home, "root", "show")["address"]
    with local_chain(chain_path) as chain:
        cfg = asyncio.run(net.fetch_root_config(chain, parse_address(root)))
        wc = worker_contract(owner, parse_address(proxy_sc), bytes.fromhex(proxy_key), cfg.params)
        assert rows["contract"] == wc.address.to_str()
        assert parse_worker_state(chain._state_of(wc.address).data).stake == 3 * net.TON
    bad = runner.invoke(app, [*cmd[:6], "--proxy-key", "abcd", "--config", str(toml)])
    assert bad.exit_code == 1 and "64 hex digits" in bad.output


def test_history_names_the_market_changes(home: Path) -> None:
    ok(home, "root", "set-class", "hist", "--max-retries", "1")
    ok(home, "root", "upgrade-code", str(ROOT_BUILD))
    changes = ok(home, "root", "history")["changes"]
    ops = [c["op"] for c in changes]
    assert "set service class" in ops and "upgrade code" in ops
    upgrade = [c for c in changes if c["op"] == "upgrade code"][-1]
    assert upgrade["argument"].endswith("data kept")


def test_worker_unstake_gives_notice_then_takes_the_stake_back(home: Path, tmp_path: Path) -> None:
    owner, toml = worker_owner(home, tmp_path)
    chain_path = home / "chain" / "local.sqlite"
    target = [
        "--proxy-sc",
        "0:" + "78" * 32,
        "--proxy-key",
        KeyPair.generate().public.hex(),
        "--config",
        str(toml),
    ]
    unstake = ["--json", "worker", "unstake", *target]
    nothing = runner.invoke(app, unstake)
    assert nothing.exit_code == 1 and "nothing staked" in nothing.output
    with local_chain(chain_path) as chain:
        asyncio.run(chain.faucet(owner, 10 * net.TON))
    assert runner.invoke(app, ["--json", "worker", "stake", "2", *target]).exit_code == 0
    notice = runner.invoke(app, unstake)
    assert notice.exit_code == 0, notice.output
    rows = json.loads(notice.output)
    assert rows["state"] == "closing" and rows["stake_nano"] == 2 * net.TON and rows["may_serve"] is False
    early = runner.invoke(app, unstake)
    assert early.exit_code == 1 and "the notice runs" in early.output
    with local_chain(chain_path) as chain:  # past the notice
        chain.advance(max(0, rows["unlock_ts"] + 1 - chain.now_sync()))
        before = chain._state_of(owner).balance
    done = runner.invoke(app, unstake)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["state"] == "closed" and json.loads(done.output)["stake_nano"] == 0
    with local_chain(chain_path) as chain:
        assert 2 * net.TON - 50_000_000 < chain._state_of(owner).balance - before <= 2 * net.TON
    again = runner.invoke(app, unstake)
    assert again.exit_code == 1 and "closed already" in again.output
