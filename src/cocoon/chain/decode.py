# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Any Cocoon message body back into its fields (:func:`decode_body`), strictly: the layouts are
those :mod:`cocoon.chain.messages` builds and the contracts parse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cocoon.chain._ton import Cell, Slice
from cocoon.chain.errors import MessageError
from cocoon.chain.market_cells import class_name_of_key, parse_collateral, parse_service_class
from cocoon.chain.messages import HASH_OPS, Op, Params, _parse, check_model_name

__all__ = ["DecodedBody", "decode_body"]


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """A parsed message body: its op, query id and the remaining fields by name."""

    op: Op
    query_id: int
    fields: dict[str, Any]


def _decode_market_fields(s: Slice, op: Op, f: dict[str, Any]) -> None:
    """Fields of the market, upgrade and collateral messages (``decode_body``)."""
    if op == Op.SET_SERVICE_CLASS:
        name = class_name_of_key(s.load_uint(128))
        f["service_class"] = parse_service_class(name, s, exact=False)
    elif op == Op.REMOVE_SERVICE_CLASS:
        f["name"] = class_name_of_key(s.load_uint(128))
    elif op == Op.SET_COLLATERAL:
        f["collateral"] = parse_collateral(s, exact=False)
    elif op == Op.UPGRADE_CODE:
        f["code"] = s.load_ref()
        f["migration"] = s.load_maybe_ref()
    elif op == Op.WORKER_STAKE:
        f["amount"] = s.load_coins()
        f["excess"] = s.load_address()
    elif op in (Op.WORKER_SLASH_EXECUTE, Op.WORKER_CLOSE_REQUEST, Op.WORKER_CLOSE_COMPLETE):
        f["excess"] = s.load_address()
    elif op == Op.WORKER_SLASH_DISPUTE:
        f["excess"] = s.load_address()
        f["signature"] = s.load_bytes(64)
        f["receipt"] = s.load_ref()
    else:
        _decode_terms_relay(s, op, f)


def _decode_terms_relay(s: Slice, op: Op, f: dict[str, Any]) -> None:
    """The slash terms on their way worker → proxy contract → root → proxy contract → worker."""
    if op not in (Op.SLASH_TERMS_QUERY, Op.ROOT_TERMS_QUERY, Op.ROOT_TERMS, Op.SLASH_TERMS):
        return  # excesses and payouts: op and query id only
    if op in (Op.ROOT_TERMS_QUERY, Op.ROOT_TERMS):
        f["worker"] = s.load_address()
    f["excess"] = s.load_address()
    if op in (Op.ROOT_TERMS, Op.SLASH_TERMS):
        f["slash_to"] = s.load_address()
        f["dispute_window_s"] = s.load_uint(32)
        f["max_slash_permille"] = s.load_uint(16)


_SIGNED_OPS = {
    Op.PROXY_SAVE_STATE,
    Op.PROXY_CLOSE_REQUEST_SIGNED,
    Op.PROXY_CLOSE_COMPLETE_SIGNED,
    Op.CLIENT_CHARGE_SIGNED,
    Op.CLIENT_GRANT_REFUND_SIGNED,
    Op.WORKER_PAYOUT_SIGNED,
    Op.WORKER_LAST_PAYOUT_SIGNED,
    Op.WORKER_SLASH_CLAIM_SIGNED,
}


def decode_body(cell: Cell) -> DecodedBody:
    """Parse any Cocoon message body; raises :class:`MessageError` on anything else."""

    def read(s: Slice) -> DecodedBody:
        raw_op = s.load_uint(32)
        try:
            op = Op(raw_op)
        except ValueError:
            raise MessageError(f"unknown op 0x{raw_op:08x}") from None
        qid = s.load_uint(64) if op not in (Op.EXCESSES, Op.PAYOUT) or s.remaining_bits >= 64 else 0
        f: dict[str, Any] = {}
        if op in _SIGNED_OPS:
            f["excess"] = s.load_address()
            f["signature"] = s.load_bytes(64)
            f["inner"] = s.load_ref()
        elif op in (Op.CLIENT_TOP_UP, Op.CLIENT_INCREASE_STAKE, Op.CLIENT_WITHDRAW, Op.PROXY_INCREASE_STAKE):
            f["amount"] = s.load_coins()
            f["excess"] = s.load_address()
        elif op in (Op.CLIENT_REQUEST_REFUND, Op.PROXY_PAYOUT):
            f["excess"] = s.load_address()
        elif op == Op.CLIENT_CHANGE_SECRET_HASH:
            f["secret_hash"] = s.load_bytes(32)
            f["excess"] = s.load_address()
        elif op == Op.CLIENT_PAYMENT:
            f["amount"] = s.load_coins()
            f["owner"] = s.load_address()
            f["excess"] = s.load_address()
        elif op == Op.WORKER_PAYOUT_REQUEST:
            f["tokens"] = s.load_uint(64)
            f["owner"] = s.load_address()
            f["excess"] = s.load_address()
        elif op in HASH_OPS:
            f["hash"] = s.load_bytes(32)
            if op == Op.ADD_MODEL_TYPE:
                n = s.load_uint(8)
                f["name"] = check_model_name(s.load_bytes(n).decode())
        elif op in (Op.REGISTER_PROXY, Op.UPDATE_PROXY):
            if op == Op.UPDATE_PROXY:
                f["seqno"] = s.load_uint(32)
            s.load_uint(1)
            n = s.load_uint(7)
            f["address"] = s.load_bytes(n).decode()
        elif op == Op.UNREGISTER_PROXY:
            f["seqno"] = s.load_uint(32)
        elif op == Op.CHANGE_PRICE:
            f["price_per_token"] = s.load_coins()
            f["worker_fee_per_token"] = s.load_coins()
        elif op == Op.CHANGE_PARAMS:
            f["params"] = Params.from_cell(s.load_ref())
        elif op == Op.CHANGE_OWNER:
            f["new_owner"] = s.load_address()
        else:
            _decode_market_fields(s, op, f)
        return DecodedBody(op, qid, f)

    return _parse(cell, read, "message body")
