"""`cocoon up` leaves its root address and owner wallet where `cocoon chain` finds them: `root show`
on its home shows the network's root, and the owner's `allow-model` is accepted by the root."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig


def _cocoon(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, list(args), terminal_width=250)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


async def test_chain_commands_find_the_up_networks_root(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1, chain=True)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=1))) as net:
        root = net.endpoints()["root_address"]
        home = str(tmp_path)
        shown = await asyncio.to_thread(_cocoon, "chain", "--home", home, "--json", "root", "show")
        assert shown["address"] == root
        assert shown["worker_image_hashes"] == [net.image_hash("worker").hex()]  # type: ignore[union-attr]
        changed = await asyncio.to_thread(
            _cocoon,
            "chain",
            "--home",
            home,
            "--json",
            "root",
            "allow-model",
            "second-model",
            "--hash",
            "ab" * 32,
        )
        assert len(str(changed["transaction"])) == 64
        shown = await asyncio.to_thread(_cocoon, "chain", "--home", home, "--json", "root", "show")
        assert "ab" * 32 in shown["model_hashes"]  # type: ignore[operator]


async def test_default_home_falls_back_to_the_up_network(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("COCOON_HOME", str(tmp_path))
    config = LocalNetworkConfig.ephemeral(tmp_path / "local", workers=1, chain=True)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=1))) as net:
        shown = await asyncio.to_thread(_cocoon, "chain", "--json", "root", "show")
        assert shown["address"] == net.endpoints()["root_address"]
