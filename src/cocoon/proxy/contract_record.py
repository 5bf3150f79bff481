"""Which billing store belongs to the proxy's current contract, and which contracts are closing.

The record names the current store (``proxy-ledger.sqlite`` before any params upgrade) and the proxy
contract it belongs to, so a proxy that was stopped while the root's params changed opens its old
contract and moves at start. A move to new contracts (:mod:`cocoon.proxy.upgrade`) writes ``contracts.json`` (0600,
replaced atomically) naming the new current store and each old contract still closing (its store,
address and params), before the new store is opened: a restart at any point resumes the move.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cocoon.errors import ConfigError

__all__ = [
    "CONTRACTS_FILE",
    "LEDGER_NAME",
    "current_contract",
    "current_ledger_path",
    "read_contracts",
    "write_contracts",
]

LEDGER_NAME = "proxy-ledger.sqlite"
CONTRACTS_FILE = "contracts.json"


def current_ledger_path(home: Path) -> Path:
    """The billing store of the proxy's current contract."""
    return home / str(read_contracts(home).get("current", LEDGER_NAME))


def current_contract(home: Path) -> str | None:
    """The address of the proxy contract the current store belongs to, once recorded."""
    contract = read_contracts(home).get("contract")
    return contract if isinstance(contract, str) and contract else None


def read_contracts(home: Path) -> dict[str, Any]:
    path = home / CONTRACTS_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("current", ""), str):
            raise ValueError("not a contracts record")
        if not isinstance(doc.get("closing", []), list) or "/" in doc.get("current", ""):
            raise ValueError("bad fields")
        return doc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc


def write_contracts(home: Path, doc: dict[str, Any]) -> None:
    path = home / CONTRACTS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
