"""The committed compiled code must be exactly what the pinned Tolk compiler makes of the sources."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cocoon.chain import CONTRACT_NAMES, load_contract

CONTRACTS = Path(__file__).parents[2] / "src" / "cocoon" / "chain" / "contracts"


def test_committed_code_loads_and_matches_hash():
    for name in CONTRACT_NAMES:
        c = load_contract(name)
        assert c.compiler == "tolk 1.1.0"
        assert c.code.hash == c.code_hash


@pytest.mark.slow
def test_recompile_matches_committed(tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: cannot recompile the Tolk contracts here")
    if not (CONTRACTS / "node_modules" / "@ton" / "tolk-js").exists():
        try:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=CONTRACTS,
                check=True,
                capture_output=True,
                timeout=240,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"npm ci failed (registry unreachable?): {exc}")
    out = tmp_path / "build"
    subprocess.run(
        ["node", "compile.mjs", str(out)], cwd=CONTRACTS, check=True, capture_output=True, timeout=240
    )
    for name in CONTRACT_NAMES:
        fresh = json.loads((out / f"{name}.json").read_text())
        committed = json.loads((CONTRACTS / "build" / f"{name}.json").read_text())
        assert fresh == committed, (
            f"{name}: committed code differs from a fresh compile (run `make contracts`)"
        )
