# mypy: disable-error-code="no-any-return"
"""LocalChain's hot path over tonpy's own C++ cells: what a transaction, a message and an account hold,
read with the emulator's cell slices instead of re-parsing their BOC in pure Python.

The same fields :mod:`cocoon.chain._txparse` reads from pytoniq cells (block.tlb, ordinary
transactions); the tests check both readers agree on every transaction and account they make. A
transaction's messages stay tonpy cells, so a trace hands them to the emulator without a BOC round trip.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from tonpy.libs.python_ton import PyCell, PyCellSlice, load_as_cell_slice, parse_string_to_cell

__all__ = [
    "NativeAccount",
    "NativeHead",
    "NativeTx",
    "PyCell",
    "boc_of",
    "cell_of",
    "hash_of",
    "read_account",
    "read_head",
    "read_tx",
    "without_crc",
]

_BOC_MAGIC = bytes.fromhex("b5ee9c72")
_BOC_HAS_CRC = 0x40  # the flags byte after the magic: has_idx, has_crc32c, has_cache_bits, ...


def without_crc(boc: bytes) -> bytes:
    """A BOC of our own emulator or store without its CRC32C, which pytoniq would check in pure Python;
    the database and SQLite's own integrity guard these bytes."""
    if len(boc) > 9 and boc[:4] == _BOC_MAGIC and boc[4] & _BOC_HAS_CRC:
        return boc[:4] + bytes([boc[4] & ~_BOC_HAS_CRC & 0xFF]) + boc[5:-4]
    return boc


def cell_of(boc: bytes) -> PyCell:
    return parse_string_to_cell(base64.b64encode(boc).decode())


def boc_of(cell: PyCell) -> bytes:
    """The emulator's BOC of ``cell`` (with its CRC32C, as tonpy writes it)."""
    return base64.b64decode(cell.to_boc())


def _slice(cell: PyCell) -> PyCellSlice:
    return load_as_cell_slice(cell, False)


def _uint(s: PyCellSlice, bits: int) -> int:
    return int(s.load_uint(bits)) if bits else 0


def _grams(s: PyCellSlice) -> int:
    return _uint(s, 8 * int(s.load_uint(4)))


def _currency(s: PyCellSlice) -> int:
    grams = _grams(s)
    if int(s.load_uint(1)):  # extra currencies
        s.fetch_ref()
    return grams


def _skip_grams(s: PyCellSlice) -> None:
    s.skip_bits(8 * int(s.load_uint(4)), False)


def _address(s: PyCellSlice) -> str | None:
    """A MsgAddress as LocalChain keys accounts ("wc:hex"); None for addr_none and external ones."""
    tag = int(s.load_uint(2))
    if tag == 0b00:
        return None
    if tag == 0b01:  # addr_extern
        s.skip_bits(int(s.load_uint(9)), False)
        return None
    if int(s.load_uint(1)):  # anycast: depth:(#<= 30) rewrite_pfx:(bits depth)
        s.skip_bits(int(s.load_uint(5)), False)
    if tag == 0b10:
        wc = int(s.load_int(8))
        return f"{wc}:{int(s.load_uint(256)):064x}"
    length = int(s.load_uint(9))  # addr_var: not made by the contracts LocalChain runs
    wc = int(s.load_int(32))
    return f"{wc}:{int(s.load_uint(length)):0{(length + 3) // 4}x}"


@dataclass(frozen=True, slots=True)
class NativeHead:
    """What a trace needs from a message: where it goes and, for an internal one, what it carries."""

    internal: bool
    bounced: bool
    dest: str | None
    value: int
    fwd_fee: int
    op: int | None


_EXTERNAL = NativeHead(False, False, None, 0, 0, None)


def read_head(cell: PyCell) -> NativeHead:
    """An internal message's head (an external one: only that it is not internal)."""
    s = _slice(cell)
    if int(s.load_uint(1)):
        return _EXTERNAL
    flags = int(s.load_uint(3))  # ihr_disabled, bounce, bounced
    _address(s)  # src
    dest = _address(s)
    value = _currency(s)
    _skip_grams(s)  # ihr_fee
    fwd = _grams(s)
    s.skip_bits(64 + 32, False)
    if int(s.load_uint(1)):  # init present
        if int(s.load_uint(1)):
            s.fetch_ref()
        else:
            if int(s.load_uint(1)):
                s.skip_bits(5, False)
            if int(s.load_uint(1)):
                s.skip_bits(2, False)
            for _ in range(3):
                if int(s.load_uint(1)):
                    s.fetch_ref()
    body = _slice(s.fetch_ref()) if int(s.load_uint(1)) else s
    op = int(body.preload_uint(32)) if body.bits >= 32 else None
    return NativeHead(True, bool(flags & 1), dest, value, fwd, op)


@dataclass(frozen=True, slots=True)
class NativeTx:
    lt: int
    now: int
    total_fees: int
    in_msg: PyCell | None
    out_msgs: list[PyCell]
    compute_ok: bool
    exit_code: int
    gas_used: int
    action_ok: bool
    action_result: int
    aborted: bool


def _hashmap_values(root: PyCell, n: int, out: list[PyCell]) -> None:
    """The ``^X`` values of a ``Hashmap n ^X``, in key order (left before right)."""
    s = _slice(root)
    if not int(s.load_uint(1)):  # hml_short$0 len:(Unary ~l) s:(l * Bit)
        length = 0
        while int(s.load_uint(1)):
            length += 1
        s.skip_bits(length, False)
    elif not int(s.load_uint(1)):  # hml_long$10 l:(#<= n) s:(l * Bit)
        length = int(s.load_uint(n.bit_length()))
        s.skip_bits(length, False)
    else:  # hml_same$11 v:Bit l:(#<= n)
        s.skip_bits(1, False)
        length = int(s.load_uint(n.bit_length()))
    rest = n - length
    if rest == 0:
        out.append(s.fetch_ref())
        return
    left, right = s.fetch_ref(), s.fetch_ref()
    _hashmap_values(left, rest - 1, out)
    _hashmap_values(right, rest - 1, out)


def _skip_status_change(s: PyCellSlice) -> None:
    if int(s.load_uint(1)):
        s.skip_bits(1, False)


def read_tx(cell: PyCell) -> NativeTx:
    s = _slice(cell)
    if int(s.load_uint(4)) != 0b0111:
        raise ValueError("not a transaction")
    s.skip_bits(256, False)
    lt = int(s.load_uint(64))
    s.skip_bits(256 + 64, False)
    now = int(s.load_uint(32))
    s.skip_bits(15 + 2 + 2, False)
    msgs = _slice(s.fetch_ref())
    in_msg = msgs.fetch_ref() if int(msgs.load_uint(1)) else None
    out: list[PyCell] = []
    if int(msgs.load_uint(1)):
        _hashmap_values(msgs.fetch_ref(), 15, out)
    total_fees = _currency(s)
    s.fetch_ref()  # state update
    d = _slice(s.fetch_ref())
    if int(d.load_uint(4)) != 0:
        raise ValueError("not an ordinary transaction")
    d.skip_bits(1, False)  # credit_first
    if int(d.load_uint(1)):  # storage phase
        _skip_grams(d)
        if int(d.load_uint(1)):
            _skip_grams(d)
        _skip_status_change(d)
    if int(d.load_uint(1)):  # credit phase
        if int(d.load_uint(1)):
            _skip_grams(d)
        _currency(d)
    compute_ok = False
    exit_code = gas_used = 0
    if not int(d.load_uint(1)):  # skipped
        if int(d.load_uint(2)) == 0b11:
            d.skip_bits(1, False)
    else:
        compute_ok = bool(int(d.load_uint(1)))
        d.skip_bits(2, False)
        _skip_grams(d)
        c = _slice(d.fetch_ref())
        gas_used = _uint(c, 8 * int(c.load_uint(3)))
        c.skip_bits(8 * int(c.load_uint(3)), False)  # gas_limit
        if int(c.load_uint(1)):
            c.skip_bits(8 * int(c.load_uint(2)), False)  # gas_credit
        c.skip_bits(8, False)
        exit_code = int(c.load_int(32))
    action_ok = True
    action_result = 0
    if int(d.load_uint(1)):
        a = _slice(d.fetch_ref())
        action_ok = bool(int(a.load_uint(1)))
        a.skip_bits(2, False)
        _skip_status_change(a)
        if int(a.load_uint(1)):
            _skip_grams(a)
        if int(a.load_uint(1)):
            _skip_grams(a)
        action_result = int(a.load_int(32))
    aborted = bool(int(d.load_uint(1)))
    return NativeTx(
        lt, now, total_fees, in_msg, out, compute_ok, exit_code, gas_used, action_ok, action_result, aborted
    )


@dataclass(frozen=True, slots=True)
class NativeAccount:
    """A ShardAccount's fields AccountState shows; code and data stay tonpy cells."""

    balance: int
    status: str
    code: PyCell | None
    data: PyCell | None
    last_trans_lt: int


_STATUS = {0b00: "uninit", 0b01: "frozen"}


def read_account(shard_account: PyCell) -> NativeAccount:
    """account_descr$_ account:^Account last_trans_hash:bits256 last_trans_lt:uint64."""
    sa = _slice(shard_account)
    acc = _slice(sa.fetch_ref())
    sa.skip_bits(256, False)
    last_trans_lt = int(sa.load_uint(64))
    if not int(acc.load_uint(1)):  # account_none$0 (shown with lt 0, as pytoniq's parse did)
        return NativeAccount(0, "nonexist", None, None, 0)
    _address(acc)
    acc.skip_bits(8 * int(acc.load_uint(3)), False)  # storage_used: cells
    acc.skip_bits(8 * int(acc.load_uint(3)), False)  # bits
    if int(acc.load_uint(3)) == 0b001:  # storage_extra_info dict_hash
        acc.skip_bits(256, False)
    acc.skip_bits(32, False)  # last_paid
    if int(acc.load_uint(1)):
        _skip_grams(acc)  # due_payment
    acc.skip_bits(64, False)  # storage.last_trans_lt
    balance = _currency(acc)
    if not int(acc.load_uint(1)):
        return NativeAccount(balance, _STATUS[int(acc.load_uint(1))], None, None, last_trans_lt)
    if int(acc.load_uint(1)):  # split_depth
        acc.skip_bits(5, False)
    if int(acc.load_uint(1)):  # special
        acc.skip_bits(2, False)
    code = acc.fetch_ref() if int(acc.load_uint(1)) else None
    data = acc.fetch_ref() if int(acc.load_uint(1)) else None
    return NativeAccount(balance, "active", code, data, last_trans_lt)


def hash_of(cell: PyCell) -> bytes:
    return bytes.fromhex(cell.get_hash())
