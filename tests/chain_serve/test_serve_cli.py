"""`cocoon chain serve` refuses addresses a global config cannot carry, before it opens anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cocoon.cli.main import app


def test_serve_needs_an_ipv4_address_clients_can_dial(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    wildcard = runner.invoke(app, ["chain", "serve", "--home", str(home), "--host", "0.0.0.0"])
    assert wildcard.exit_code != 0 and "--public-ip" in wildcard.output
    named = runner.invoke(app, ["chain", "serve", "--home", str(home), "--public-ip", "chain.example.org"])
    assert named.exit_code != 0 and "not an IPv4 address" in named.output
    assert not (home / "chain").exists()  # refused before the chain or the key was made
