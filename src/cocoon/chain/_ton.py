"""The pytoniq-core names this package uses, imported from where they are defined (its top-level
re-exports are implicit, which mypy --strict refuses), plus a typed ``begin_cell``."""

from __future__ import annotations

from pytoniq_core.boc.address import Address
from pytoniq_core.boc.builder import Builder
from pytoniq_core.boc.cell import Cell
from pytoniq_core.boc.hashmap.hashmap import HashMap
from pytoniq_core.boc.slice import Slice
from pytoniq_core.tlb.account import ShardAccount, StateInit
from pytoniq_core.tlb.block import CurrencyCollection
from pytoniq_core.tlb.transaction import ExternalMsgInfo, InternalMsgInfo, MessageAny, Transaction

__all__ = [
    "Address",
    "Builder",
    "Cell",
    "CurrencyCollection",
    "ExternalMsgInfo",
    "HashMap",
    "InternalMsgInfo",
    "MessageAny",
    "ShardAccount",
    "Slice",
    "StateInit",
    "Transaction",
    "begin_cell",
]


def begin_cell() -> Builder:
    return Builder()
