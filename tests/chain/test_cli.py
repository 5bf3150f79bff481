from __future__ import annotations

import hashlib
import json

from typer.testing import CliRunner

from cocoon.chain import KeyPair, LocalChain, Wallet, WalletClient, fetch_root_config, open_proxy_contract
from cocoon.cli.chain_cmd import app

runner = CliRunner()


def run(home, *args):
    result = runner.invoke(app, ["--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_end_to_end(tmp_path):
    home = tmp_path / "home"
    st = run(home, "local", "start")
    assert st["owner_balance_nano"] == 1000 * 10**9
    root = run(home, "root", "deploy", "--price", "1000", "--worker-fee", "800")["root"]
    run(home, "root", "allow-image", "ab" * 32, "--kind", "proxy")
    run(home, "root", "allow-model", "Qwen/Qwen3-0.6B@abc:def")
    run(home, "root", "allow-model", "SmolLM2-135M-Instruct", "--hash", "cd" * 32)
    bad = runner.invoke(app, ["--home", str(home), "root", "allow-model", "m", "--hash", "zz"])
    assert bad.exit_code != 0 and "64 hex" in bad.output
    v = run(home, "root", "add-proxy", "127.0.0.1:8800")["version"]
    run(home, "root", "set-params", "--client-delay", "60")
    show = run(home, "root", "show")
    assert show["address"] == root and show["version"] == v + 1
    assert show["proxy_image_hashes"] == ["ab" * 32]
    qwen = hashlib.sha256(b"Qwen/Qwen3-0.6B@abc:def").hexdigest()
    assert show["models"] == {qwen: "Qwen/Qwen3-0.6B@abc:def", "cd" * 32: "SmolLM2-135M-Instruct"}
    assert show["registered_proxies"] == ["1=127.0.0.1:8800"] and show["client_delay_before_close"] == 60

    w = run(home, "wallet", "new", "alice", "--fund", "50")
    assert run(home, "wallet", "balance", "alice")["balance_nano"] == 50 * 10**9
    run(home, "wallet", "send", "owner", w["address"], "1.5")
    assert run(home, "wallet", "balance", "alice")["balance_nano"] == 51_500_000_000

    # a proxy contract to pay into, made through the library
    import asyncio

    proxy_key = KeyPair.generate()

    async def make_proxy():
        chain = LocalChain(home / "chain" / "local.sqlite")
        try:
            pw = WalletClient(chain, Wallet(KeyPair.generate()))
            await chain.faucet(pw.address, 10 * 10**9)
            cfg = await fetch_root_config(chain, pw.address.__class__(root))
            return await open_proxy_contract(pw, proxy_key.public, cfg.address, cfg.params, stake=10**9)
        finally:
            chain.close()

    proxy_sc = asyncio.run(make_proxy()).to_str()
    c = run(
        home,
        "client",
        "top-up",
        "5",
        "--wallet",
        "alice",
        "--proxy-sc",
        proxy_sc,
        "--proxy-key",
        proxy_key.public.hex(),
    )
    assert c["balance_nano"] == 5 * 10**9 and c["state"] == "active"
    assert run(home, "client", "top-up", "1", "--wallet", "alice")["balance_nano"] == 6 * 10**9
    assert run(home, "client", "stake", "2", "--wallet", "alice")["stake_nano"] == 2 * 10**9
    assert run(home, "client", "withdraw", "1", "--wallet", "alice")["balance_nano"] == 5 * 10**9
    assert run(home, "client", "close", "--wallet", "alice")["state"] == "closing"
    run(home, "local", "advance", "60")
    assert run(home, "client", "close", "--wallet", "alice")["state"] == "closed"
    status = run(home, "local", "status")
    assert status["transactions"] > 10 and status["root"] == root


def test_cli_errors(tmp_path):
    home = tmp_path / "h"
    r = runner.invoke(app, ["--home", str(home), "local", "status"])
    assert r.exit_code == 1 and "local chain" in r.output
    run(home, "local", "start")
    r = runner.invoke(app, ["--home", str(home), "wallet", "send", "owner", "nonsense", "1"])
    assert r.exit_code == 1 and "not a TON address" in r.output
    r = runner.invoke(app, ["--home", str(home), "wallet", "new", "../x"])
    assert r.exit_code == 1
    r = runner.invoke(app, ["--home", str(home), "root", "show"])
    assert r.exit_code == 1 and "no root contract" in r.output
    r = runner.invoke(app, ["--home", str(home), "wallet", "send", "owner", "0:" + "11" * 32, "5000"])
    assert r.exit_code == 1 and "needs" in r.output


def test_cli_lite_config_errors_are_clean(tmp_path):
    cfg = tmp_path / "global.json"
    cfg.write_text('{"liteservers": []}')
    run(tmp_path, "local", "start")
    r = runner.invoke(
        app, ["--home", str(tmp_path), "--lite-config", str(cfg), "root", "show", "--root", "0:" + "11" * 32]
    )
    assert r.exit_code == 1 and "no liteservers" in r.output


def test_local_bench_reports_rates_against_the_target(tmp_path):
    numbers = run(tmp_path / "home", "local", "bench", "--transfers", "8", "--charges", "4")
    assert numbers["store"] == "sqlite" and numbers["target_tx_per_s"] == 1000
    for kind in ("transfer", "charge", "grouped_transfer", "grouped_charge"):
        rate = numbers[f"{kind}_tx_per_s"]
        assert rate > 0 and numbers[f"{kind}_tx_per_cpu_s"] > 0
        assert abs(numbers[f"{kind}_of_target"] - rate / 1000) < 0.002
    assert {o["op"] for o in numbers["ops"]} >= {"wallet transfer", "client charge (signed)"}
    human = runner.invoke(app, ["--home", str(tmp_path / "home"), "local", "bench", "--transfers", "8"])
    assert human.exit_code == 0 and "target" in human.output and "tx/s" in human.output
