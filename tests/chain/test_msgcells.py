"""Messages built on one builder (cocoon.chain._msgcells) are pytoniq's MessageAny.serialize, bit for
bit: the same hash for every shape of init and body a wallet sends."""

from __future__ import annotations

import os

import pytest

from cocoon.chain import _msgcells
from cocoon.chain._ton import (
    Address,
    Cell,
    CurrencyCollection,
    ExternalMsgInfo,
    InternalMsgInfo,
    MessageAny,
    StateInit,
    begin_cell,
)
from cocoon.chain.code import load_contract

DEST = Address("0:" + "5a" * 32)
SRC = Address("-1:" + "3c" * 32)


def _bodies() -> list[Cell]:
    ref = begin_cell().store_uint(7, 8).end_cell()
    return [
        Cell.empty(),
        begin_cell().store_uint(0x12345678, 32).store_uint(9, 64).end_cell(),
        begin_cell().store_uint(1, 32).store_ref(ref).store_ref(ref).end_cell(),
        begin_cell().store_bytes(os.urandom(100)).end_cell(),  # 800 bits: goes by ref
        begin_cell().store_bytes(os.urandom(60)).store_ref(ref).store_ref(ref).store_ref(ref).end_cell(),
    ]


def _inits() -> list[StateInit | None]:
    data = begin_cell().store_uint(0, 32).store_bytes(os.urandom(32)).end_cell()
    return [None, StateInit(code=load_contract("wallet").code, data=data), StateInit(data=data)]


@pytest.mark.parametrize("init", range(3))
@pytest.mark.parametrize("body", range(5))
def test_internal_and_external_messages_match_pytoniq(init: int, body: int) -> None:
    b, i = _bodies()[body], _inits()[init]
    for bounce in (False, True):
        for src, value in ((None, 0), (SRC, 1), (None, 10**9 + 7), (SRC, 2**100)):
            info = InternalMsgInfo(
                ihr_disabled=True,
                bounce=bounce,
                bounced=False,
                src=src,
                dest=DEST,
                value=CurrencyCollection(value),
                ihr_fee=0,
                fwd_fee=0,
                created_lt=0,
                created_at=0,
            )
            want = MessageAny(info=info, init=i, body=b).serialize()
            got = _msgcells.internal(DEST, value, bounce=bounce, body=b, init=i, src=src)
            assert got.hash == want.hash
    ext = MessageAny(info=ExternalMsgInfo(src=None, dest=DEST, import_fee=0), init=i, body=b).serialize()
    assert _msgcells.external_in(DEST, body=b, init=i).hash == ext.hash
