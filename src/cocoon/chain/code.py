# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Compiled contract code shipped with the package (``contracts/build/*.json``, made by ``make contracts``)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cocoon.chain._ton import Cell
from cocoon.chain.errors import ChainError

__all__ = ["CONTRACT_NAMES", "CompiledContract", "load_contract"]

CONTRACT_NAMES = ("wallet", "root", "proxy", "client", "worker")


@dataclass(frozen=True, slots=True)
class CompiledContract:
    """One contract's compiled code and the compiler that produced it."""

    name: str
    compiler: str
    code: Cell
    code_hash: bytes


@cache
def load_contract(name: str) -> CompiledContract:
    """Load ``contracts/build/<name>.json``; the hash is checked against the code."""
    if name not in CONTRACT_NAMES:
        raise ChainError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    try:
        raw = resources.files("cocoon.chain").joinpath("contracts", "build", f"{name}.json").read_text()
        doc = json.loads(raw)
        code = Cell.one_from_boc(base64.b64decode(doc["codeBoc64"]))
        expected = bytes.fromhex(doc["codeHashHex"])
    except (OSError, ValueError, KeyError) as exc:
        raise ChainError(f"compiled code of {name!r} is missing or broken (run `make contracts`)") from exc
    if code.hash != expected:
        raise ChainError(f"compiled code of {name!r} does not match its recorded hash")
    return CompiledContract(name=name, compiler=str(doc.get("compiler", "")), code=code, code_hash=expected)
