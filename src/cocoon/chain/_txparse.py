# mypy: disable-error-code="no-untyped-call,no-any-return"
"""A lean reader for the parts of a Transaction cell LocalChain records (block.tlb, ordinary
transactions): 10x faster than pytoniq-core's full TL-B parse, checked against it in the tests."""

from __future__ import annotations

from dataclasses import dataclass

from cocoon.chain._ton import Cell, Slice

__all__ = ["LeanTx", "MsgHead", "read_msg_head", "read_tx"]


def _grams(s: Slice) -> int:
    n = s.load_uint(4)
    return s.load_uint(n * 8) if n else 0


def _var_uint(s: Slice, len_bits: int) -> int:
    n = s.load_uint(len_bits)
    return s.load_uint(n * 8) if n else 0


def _currency(s: Slice) -> int:
    grams = _grams(s)
    s.load_maybe_ref()  # extra currencies
    return grams


def _skip_status_change(s: Slice) -> None:
    if s.load_bit():
        s.load_bit()


@dataclass(frozen=True, slots=True)
class MsgHead:
    internal: bool
    external_out: bool
    bounced: bool
    dest: object
    value: int
    fwd_fee: int
    op: int | None


def read_msg_head(cell: Cell) -> MsgHead:
    s = cell.begin_parse()
    internal = not s.load_bit()
    bounced = False
    value = fwd = 0
    if internal:
        s.load_bit()  # ihr_disabled
        s.load_bit()  # bounce
        bounced = bool(s.load_bit())
        s.load_address()
        dest = s.load_address()
        value = _currency(s)
        _grams(s)  # ihr_fee
        fwd = _grams(s)
        s.skip_bits(64 + 32)
        ext_out = False
    else:
        ext_out = bool(s.load_bit())
        if ext_out:
            s.load_address()
            dest = s.load_address()
            s.skip_bits(64 + 32)
        else:
            s.load_address()
            dest = s.load_address()
            _grams(s)
    if s.load_bit():  # init present
        if s.load_bit():
            s.load_ref()
        else:
            if s.load_bit():
                s.skip_bits(5)
            if s.load_bit():
                s.skip_bits(2)
            for _ in range(3):
                s.load_maybe_ref()
    body = s.load_ref().begin_parse() if s.load_bit() else s
    op = body.preload_uint(32) if body.remaining_bits >= 32 else None
    return MsgHead(internal, ext_out, bounced, dest, value, fwd, op)


@dataclass(frozen=True, slots=True)
class LeanTx:
    lt: int
    now: int
    total_fees: int
    in_msg: Cell | None
    out_msgs: list[Cell]
    compute_ok: bool
    compute_skipped: bool
    exit_code: int
    gas_used: int
    action_ok: bool
    action_result: int
    aborted: bool


def read_tx(cell: Cell) -> LeanTx:
    s = cell.begin_parse()
    if s.load_uint(4) != 0b0111:
        raise ValueError("not a transaction")
    s.skip_bits(256)
    lt = s.load_uint(64)
    s.skip_bits(256 + 64)
    now = s.load_uint(32)
    s.skip_bits(15 + 2 + 2)
    msgs = s.load_ref().begin_parse()
    in_msg = msgs.load_maybe_ref()
    out_dict = msgs.load_dict(15, key_deserializer=lambda k: k, value_deserializer=lambda v: v.load_ref())
    out = [
        out_dict[k] for k in sorted(out_dict or {}, key=lambda k: int(k, 2) if isinstance(k, str) else int(k))
    ]
    total_fees = _currency(s)
    s.load_ref()  # state update
    d = s.load_ref().begin_parse()
    if d.load_uint(4) != 0:
        raise ValueError("not an ordinary transaction")
    d.load_bit()  # credit_first
    if d.load_bit():  # storage phase
        _grams(d)
        if d.load_bit():
            _grams(d)
        _skip_status_change(d)
    if d.load_bit():  # credit phase
        if d.load_bit():
            _grams(d)
        _currency(d)
    compute_ok = False
    skipped = not d.load_bit()
    exit_code = gas_used = 0
    if skipped:
        if d.load_uint(2) == 0b11:
            d.load_bit()
    else:
        compute_ok = bool(d.load_bit())
        d.skip_bits(2)
        _grams(d)
        c = d.load_ref().begin_parse()
        gas_used = _var_uint(c, 3)
        _var_uint(c, 3)
        if c.load_bit():
            _var_uint(c, 2)
        c.skip_bits(8)
        exit_code = c.load_int(32)
    action_ok = True
    action_result = 0
    action = d.load_maybe_ref()
    if action is not None:
        a = action.begin_parse()
        action_ok = bool(a.load_bit())
        a.skip_bits(2)
        _skip_status_change(a)
        if a.load_bit():
            _grams(a)
        if a.load_bit():
            _grams(a)
        action_result = a.load_int(32)
    aborted = bool(d.load_bit())
    return LeanTx(
        lt,
        now,
        total_fees,
        in_msg,
        out,
        compute_ok,
        skipped,
        exit_code,
        gas_used,
        action_ok,
        action_result,
        aborted,
    )
