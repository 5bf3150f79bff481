# mypy: disable-error-code="no-untyped-call,no-any-return"
"""Messages built on one builder: bit for bit what pytoniq's ``MessageAny(...).serialize()`` makes
(the tests compare hashes), without the cells of their own it builds, and hashes, for the message
info and its value first. A wallet transfer builds two messages; that was a seventh of one."""

from __future__ import annotations

from cocoon.chain._ton import Address, Builder, Cell, StateInit, begin_cell

__all__ = ["external_in", "internal"]


def internal(
    dest: Address, value: int, *, bounce: bool, body: Cell, init: StateInit | None, src: Address | None = None
) -> Cell:
    """int_msg_info$0, IHR disabled, not bounced, no extra currencies, fees and times 0."""
    b = (
        begin_cell()
        .store_uint(0b0100 | (0b0010 if bounce else 0), 4)  # $0 ihr_disabled bounce bounced
        .store_address(src)
        .store_address(dest)
        .store_coins(value)
        .store_bit(0)  # no extra currencies
        .store_coins(0)  # ihr_fee
        .store_coins(0)  # fwd_fee
        .store_uint(0, 64 + 32)  # created_lt, created_at
    )
    return _finish(b, init, body)


def external_in(dest: Address, *, body: Cell, init: StateInit | None) -> Cell:
    """ext_in_msg_info$10 from addr_none, import_fee 0."""
    b = begin_cell().store_uint(0b10, 2).store_address(None).store_address(dest).store_coins(0)
    return _finish(b, init, body)


def _finish(b: Builder, init: StateInit | None, body: Cell) -> Cell:
    """MessageAny.serialize's init and body: inline when they fit (its own bounds), else a ref."""
    if init is not None:
        b.store_bit(1)
        cell = init.serialize()
        if len(cell.bits) <= b.available_bits - 2 and len(cell.refs) <= b.available_refs:
            b.store_bit(0).store_cell(cell)
        else:
            b.store_bit(1).store_ref(cell)
    else:
        b.store_bit(0)
    if len(body.bits) <= b.available_bits - 1 and len(body.refs) <= b.available_refs:
        b.store_bit(0).store_cell(body)
    else:
        b.store_bit(1).store_ref(body)
    return b.end_cell()
