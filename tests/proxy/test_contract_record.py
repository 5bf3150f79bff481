"""contracts.json: which billing store is current, which contracts are closing; bad records are clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cocoon.errors import ConfigError
from cocoon.proxy.contract_record import (
    CONTRACTS_FILE,
    LEDGER_NAME,
    current_ledger_path,
    read_contracts,
    write_contracts,
)


def test_no_record_means_the_first_store(tmp_path: Path) -> None:
    assert current_ledger_path(tmp_path) == tmp_path / LEDGER_NAME
    assert read_contracts(tmp_path) == {}


def test_a_record_names_the_current_store_and_is_private(tmp_path: Path) -> None:
    doc = {
        "current": "proxy-ledger-v2.sqlite",
        "closing": [{"ledger": LEDGER_NAME, "proxy_contract": "0:ab"}],
    }
    write_contracts(tmp_path, doc)
    assert current_ledger_path(tmp_path) == tmp_path / "proxy-ledger-v2.sqlite"
    assert read_contracts(tmp_path) == doc
    assert stat.S_IMODE((tmp_path / CONTRACTS_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"current": 3}', '{"current": "../elsewhere.sqlite"}', '{"closing": "x"}'],
)
def test_a_damaged_record_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / CONTRACTS_FILE).write_text(text)
    with pytest.raises(ConfigError, match=CONTRACTS_FILE):
        current_ledger_path(tmp_path)
