"""The CLI against a running local network: credentials, refusals and receipts, end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import Result

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet import LocalNetwork, LocalNetworkConfig
from tests.cli.conftest import assert_one_line_error, cocoon

API_KEY = "sk-app-key-1"


@pytest.fixture
async def network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalNetwork]:
    monkeypatch.setenv("COCOON_HOME", str(tmp_path / "elsewhere"))  # no admin token found by default
    monkeypatch.delenv("COCOON_API_KEY", raising=False)
    monkeypatch.delenv("COCOON_ADMIN_TOKEN", raising=False)
    engine = ScriptedEngine(Script(chunks=2))
    config = LocalNetworkConfig.ephemeral(tmp_path / "net", workers=1, client_api_keys=(API_KEY,))
    async with LocalNetwork(config, engine_factory=lambda _: engine) as running:
        yield running


async def run(*args: str) -> Result:
    # The CLI is synchronous and the network serves on this loop: run it beside the loop.
    return await asyncio.to_thread(cocoon, *args)


def _client_url(network: LocalNetwork) -> str:
    return network.base_url.removesuffix("/v1")


async def test_chat_refusals_are_one_line(network: LocalNetwork) -> None:
    base = network.base_url
    unknown = await run("chat", "hi", "--base-url", base, "--model", "no-such-model", "--api-key", API_KEY)
    assert_one_line_error(unknown, "the client refused (404)")
    wrong_key = await run("chat", "hi", "--base-url", base, "--api-key", "sk-wrong")
    assert_one_line_error(wrong_key, "the client refused (401)")


async def test_chat_with_an_api_key_or_the_admin_token_from_the_home(network: LocalNetwork) -> None:
    answered = await run("chat", "hi", "--base-url", network.base_url, "--api-key", API_KEY)
    assert answered.exit_code == 0, answered.output
    assert "scripted-model" in answered.output and " TON" in answered.output
    # No key given: the CLI uses the admin token the client wrote into its home (a `cocoon up` home).
    home = str(network.config.home)
    by_token = await run("chat", "hi", "--base-url", network.base_url, "--home", home)
    assert by_token.exit_code == 0, by_token.output


async def test_reads_need_a_key_and_say_how_to_pass_one(network: LocalNetwork) -> None:
    url = _client_url(network)
    refused = await run("client", "receipts", "--url", url)
    assert_one_line_error(refused, "refused the credentials (401)", "--api-key")
    with_key = await run("client", "receipts", "--url", url, "--api-key", API_KEY, "--json")
    assert with_key.exit_code == 0 and json.loads(with_key.output) == []
    with_home = await run("--home", str(network.config.home / "client"), "client", "receipts", "--url", url)
    assert with_home.exit_code == 0, with_home.output
    # /health is open: the status view needs no key and shows amounts in TON.
    status = await run("client", "status", "--url", url)
    assert status.exit_code == 0 and "0 TON" in status.output


async def test_money_commands_send_the_admin_token(network: LocalNetwork) -> None:
    url = _client_url(network)
    wrong = await run("client", "top-up", "1", "--url", url, "--admin-token", "not-the-token")
    assert_one_line_error(wrong, "(401)", "--admin-token")
    # The API key is not enough to move money.
    app_key = await run("client", "withdraw", "--url", url, "--admin-token", API_KEY)
    assert_one_line_error(app_key, "(401)")


async def test_verify_receipt_takes_what_receipts_json_prints(network: LocalNetwork, tmp_path: Path) -> None:
    url, key = _client_url(network), ("--api-key", API_KEY)
    for _ in range(2):
        assert (await run("chat", "hi", "--base-url", network.base_url, *key)).exit_code == 0
    listed = await run("client", "receipts", "--url", url, *key, "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)
    assert len(items) == 2 and all(item["receipt_verified"] for item in items)
    whole = tmp_path / "receipts.json"
    whole.write_text(listed.output)
    checked = await run("client", "verify-receipt", str(whole))
    assert checked.exit_code == 0, checked.output
    assert checked.output.count("valid") == 2 and "TON" in checked.output
    report = json.loads((await run("client", "verify-receipt", str(whole), "--json")).output)
    assert report["valid"] and [r["cost_nano"] for r in report["receipts"]] == [i["cost_nano"] for i in items]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(items[0]))
    assert (await run("client", "verify-receipt", str(one))).exit_code == 0
    items[1]["receipt"]["worker"]["body"]["usage"]["completion_tokens"] += 1
    whole.write_text(json.dumps(items))
    tampered = await run("client", "verify-receipt", str(whole), "--json")
    assert tampered.exit_code == 1
    verdicts = [r["valid"] for r in json.loads(tampered.output)["receipts"]]
    assert verdicts == [True, False]
