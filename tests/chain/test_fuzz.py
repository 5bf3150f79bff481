"""Parsers of outside input: any bytes / cells give a result or a clear MessageError, and a bad body
posted on chain changes no contract state."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytoniq_core import Builder, Cell, begin_cell

from cocoon.chain import (
    MessageError,
    decode_body,
    parse_client_state,
    parse_proxy_state,
    parse_root_state,
    parse_signed,
    parse_worker_state,
)
from cocoon.chain import network as net
from cocoon.chain.messages import Op, Params

PARSERS = [
    decode_body,
    parse_signed,
    parse_root_state,
    parse_proxy_state,
    parse_client_state,
    parse_worker_state,
]
PARSERS.append(Params.from_cell)


@st.composite
def cells(draw, depth=0):
    bits = draw(st.integers(0, 1023))
    value = draw(st.integers(0, (1 << bits) - 1)) if bits else 0
    b = begin_cell()
    if bits:
        b.store_uint(value, bits)
    if depth < 2:
        for _ in range(draw(st.integers(0, 2))):
            b.store_ref(draw(cells(depth + 1)))
    return b.end_cell()


@st.composite
def op_prefixed(draw):
    op = draw(st.sampled_from([int(o) for o in Op]))
    tail = draw(cells())
    b = begin_cell().store_uint(op, 32)
    b.store_cell(tail) if len(tail.bits) <= 991 else None
    return b.end_cell()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.one_of(cells(), op_prefixed()))
def test_parsers_never_crash(cell: Cell):
    for parse in PARSERS:
        with contextlib.suppress(MessageError):
            parse(cell)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_boc_bytes(data: bytes):
    try:
        cell = Cell.one_from_boc(data)
    except Exception:
        return
    for parse in PARSERS:
        with contextlib.suppress(MessageError):
            parse(cell)


@pytest.mark.parametrize(
    "body",
    [
        begin_cell().store_uint(0xDEADBEEF, 32).end_cell(),
        begin_cell().store_uint(Op.CLIENT_CHARGE_SIGNED, 32).store_uint(1, 64).end_cell(),
        begin_cell().store_uint(Op.CLIENT_TOP_UP, 32).end_cell(),
        # a valid zero top-up with two stray bits after it: refused whole (strict parsing, exit 9)
        begin_cell().store_uint(Op.CLIENT_TOP_UP, 32).store_uint(0, 64 + 4 + 2 + 2).end_cell(),
        begin_cell().store_uint(Op.CLIENT_WITHDRAW >> 16, 16).end_cell(),
    ],
)
async def test_garbage_on_chain_changes_nothing(world, body: Cell):
    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=3 * net.TON
    )
    before = (await world.chain.get_account(sc)).data
    trace = await world.client.transfer(sc, net.OP_VALUE, body)
    tx = next(t for t in trace if t.address == sc)
    assert not tx.success
    assert (await world.chain.get_account(sc)).data.hash == before.hash
    # the bounce brought the value back (minus fees)
    assert any(t.address == world.client.address and t.bounced_in for t in trace)


_ = Builder
