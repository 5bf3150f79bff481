"""Global options go before or after the sub-command; --json exists where the issue asked for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoon.cli.options import hoist_global_options
from tests.cli.conftest import assert_one_line_error, cocoon


def test_hoisting_moves_global_options_with_their_values_and_keeps_the_rest_in_order() -> None:
    args = ["chain", "root", "show", "--home", "X", "--root", "R", "--json"]
    assert hoist_global_options(args) == ["--home", "X", "--json", "chain", "root", "show", "--root", "R"]
    assert hoist_global_options(["a", "--home=Y", "b"]) == ["--home=Y", "a", "b"]
    # After `--` nothing is an option.
    assert hoist_global_options(["chat", "--", "--json"]) == ["chat", "--", "--json"]


@pytest.mark.parametrize(
    "args",
    [
        ("--home", "{home}", "chain", "local", "status"),
        ("chain", "--home", "{home}", "local", "status"),
        ("chain", "local", "status", "--home", "{home}"),
        ("chain", "local", "status", "--home={home}"),
    ],
)
def test_home_is_accepted_before_or_after_the_sub_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = cocoon(*(a.format(home=tmp_path) for a in args))
    assert_one_line_error(result, f"no local chain in {tmp_path / 'chain'}")


def test_json_and_home_after_a_nested_chain_command(tmp_path: Path) -> None:
    started = cocoon("chain", "local", "start", "--fund", "2.5", "--home", str(tmp_path), "--json")
    assert started.exit_code == 0, started.output
    assert json.loads(started.output)["owner_balance_nano"] == 2_500_000_000
    status = cocoon("--json", "chain", "local", "status", "--home", str(tmp_path))
    doc = json.loads(status.output)
    assert isinstance(doc["minted_nano"], int) and isinstance(doc["fees_nano"], int)
    # Tables show TON, one format for every amount.
    table = cocoon("chain", "local", "status", "--home", str(tmp_path))
    assert table.exit_code == 0 and " TON" in table.output and "minted_nano" not in table.output


def test_version_json_either_side() -> None:
    from cocoon import __version__

    for args in (("version", "--json"), ("--json", "version")):
        result = cocoon(*args)
        assert result.exit_code == 0 and json.loads(result.output) == {"version": __version__}
    assert cocoon("version").output.strip() == __version__


def test_worker_model_hash_json(tmp_path: Path) -> None:
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"weights")
    plain = cocoon("worker", "model-hash", str(weights))
    as_json = cocoon("worker", "model-hash", str(weights), "--json")
    assert plain.exit_code == 0 and as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {
        "path": str(weights),
        "model_hash": plain.output.strip(),
        "files": 1,
        "bytes": len(b"weights"),
        "skipped": [],
    }


def test_tee_gen_cert_json_and_its_key_is_private(tmp_path: Path) -> None:
    out = tmp_path / "node"
    result = cocoon(
        "tee", "gen-cert", "--backend", "sim", "--out", str(out), "--home", str(tmp_path / "h"), "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["backend"] == "sim" and len(doc["public_key"]) == 64 and len(doc["image_hash"]) == 64
    assert Path(doc["key"]).stat().st_mode & 0o077 == 0


def test_tee_status_names_match_the_verifier() -> None:
    from cocoon.cli.tee_cmd import TCB_STATUS_NAMES
    from cocoon.tee.verify import TCB_STATUSES

    assert TCB_STATUSES[:-1] == TCB_STATUS_NAMES  # every status but Revoked may be the worst accepted


def test_chain_state_directories_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cocoon("chain", "local", "start", "--home", str(home)).exit_code == 0
    assert cocoon("chain", "wallet", "new", "bob", "--home", str(home)).exit_code == 0
    for directory in (home, home / "chain", home / "chain" / "wallets"):
        assert directory.stat().st_mode & 0o077 == 0, directory
