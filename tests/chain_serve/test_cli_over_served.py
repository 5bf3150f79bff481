"""`cocoon chain` commands read a served chain with --lite-config and --dev-chain (and refuse it
without --dev-chain); `cocoon chain local bench --served` measures both paths in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.chain.liteserver.bench import serve_process
from cocoon.cli.main import app

pytestmark = pytest.mark.slow  # each starts a `cocoon chain serve` process (~3 s)


def test_chain_commands_over_a_served_chain(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    assert runner.invoke(app, ["chain", *home, "local", "start", "--fund", "5"]).exit_code == 0
    assert runner.invoke(app, ["chain", *home, "wallet", "new", "alice", "--fund", "3"]).exit_code == 0
    with serve_process(tmp_path) as config:
        lite = ["--lite-config", str(config)]
        shown = runner.invoke(
            app, ["--json", "chain", *home, *lite, "--dev-chain", "wallet", "balance", "alice"]
        )
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["balance_nano"] == 3 * 10**9
        refused = runner.invoke(app, ["chain", *home, *lite, "wallet", "balance", "alice"])
        assert refused.exit_code != 0 and "--dev-chain" in refused.output


def test_bench_served_measures_both_paths(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["--json", "chain", "--home", str(tmp_path), "local", "bench", "--served", "--charges", "3"]
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["charges"] == 3 and numbers["embedded_tx_per_s"] > 0 and numbers["served_tx_per_s"] > 0
