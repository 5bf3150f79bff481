# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core leaves its cell and message methods unannotated)
"""Every change to a root contract's allowlists and parameters, read back from its transactions.

Sans-IO: :func:`root_changes` takes the root's transactions (any :class:`~cocoon.chain.Chain`'s
``get_transactions``: the embedded chain's or a liteserver's) and parses each inbound owner message
(the root runs only its owner's messages; a refused one changed nothing and is left out). The
deployment is listed too: the root's initial lists come with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cocoon.chain import MessageError, Op, Params, TxRecord, decode_body
from cocoon.chain._ton import Cell, MessageAny, Transaction  # the inbound message and its body

__all__ = ["OP_WORDS", "RootChange", "root_changes"]

OP_WORDS: Mapping[Op, str] = {
    Op.ADD_PROXY_TYPE: "allow proxy image",
    Op.DEL_PROXY_TYPE: "remove proxy image",
    Op.ADD_WORKER_TYPE: "allow worker image",
    Op.DEL_WORKER_TYPE: "remove worker image",
    Op.ADD_MODEL_TYPE: "allow model",
    Op.DEL_MODEL_TYPE: "remove model",
    Op.REGISTER_PROXY: "register proxy",
    Op.UNREGISTER_PROXY: "unregister proxy",
    Op.UPDATE_PROXY: "update proxy",
    Op.CHANGE_PRICE: "change prices",
    Op.CHANGE_PARAMS: "change parameters",
    Op.CHANGE_OWNER: "change owner",
    Op.SET_SERVICE_CLASS: "set service class",
    Op.REMOVE_SERVICE_CLASS: "remove service class",
    Op.SET_COLLATERAL: "set collateral",
    Op.UPGRADE_CODE: "upgrade code",
}
_PARAM_FIELDS = (
    ("price_per_token", "price/token"),
    ("worker_fee_per_token", "worker fee/token"),
    ("prompt_multiplier", "prompt ×"),
    ("cached_multiplier", "cached ×"),
    ("completion_multiplier", "completion ×"),
    ("reasoning_multiplier", "reasoning ×"),
    ("proxy_delay_before_close", "proxy close delay s"),
    ("client_delay_before_close", "client close delay s"),
    ("min_proxy_stake", "min proxy stake"),
    ("min_client_stake", "min client stake"),
    ("params_version", "params version"),
)


@dataclass(frozen=True, slots=True)
class RootChange:
    """One accepted change: when, what (in words and as the op), its argument, which transaction."""

    at: int  # unix seconds (chain time)
    lt: int
    op: str  # in words
    op_code: int | None  # None for the deployment
    argument: str
    transaction: bytes
    sender: str

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z")

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.iso_time,
            "unix_time": self.at,
            "lt": self.lt,
            "op": self.op,
            "op_code": None if self.op_code is None else f"0x{self.op_code:08x}",
            "argument": self.argument,
            "transaction": self.transaction.hex(),
            "sender": self.sender,
        }


def _params_text(new: Params, old: Params | None) -> str:
    if old is None:
        return ", ".join(f"{label} {getattr(new, name)}" for name, label in _PARAM_FIELDS)
    moved = [
        f"{label} {getattr(old, name)} → {getattr(new, name)}"
        for name, label in _PARAM_FIELDS
        if getattr(old, name) != getattr(new, name)
    ]
    return ", ".join(moved) or "no field changed"


def _argument(op: Op, fields: Mapping[str, Any], previous: Params | None) -> str:
    if "hash" in fields:
        text = bytes(fields["hash"]).hex()
        return f"{text} as {fields['name']!r}" if "name" in fields else text
    if op == Op.REGISTER_PROXY:
        return str(fields["address"])
    if op == Op.UPDATE_PROXY:
        return f"seqno {fields['seqno']} → {fields['address']}"
    if op == Op.UNREGISTER_PROXY:
        return f"seqno {fields['seqno']}"
    if op == Op.CHANGE_PRICE:
        return f"price/token {fields['price_per_token']}, worker fee/token {fields['worker_fee_per_token']}"
    if op == Op.CHANGE_PARAMS:
        return _params_text(fields["params"], previous)
    if op == Op.CHANGE_OWNER:
        return str(fields["new_owner"].to_str())
    if op == Op.UPGRADE_CODE:
        kept = "data kept" if fields["migration"] is None else f"data {fields['migration'].hash.hex()}"
        return f"code {fields['code'].hash.hex()}, {kept}"
    if op == Op.REMOVE_SERVICE_CLASS:
        return str(fields["name"])
    terms = fields.get("service_class", fields.get("collateral"))  # market terms: field by field
    if dataclasses.is_dataclass(terms) and not isinstance(terms, type):
        return ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(terms).items())
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or "—"


def _inbound(tx: TxRecord) -> MessageAny | None:
    parsed = Transaction.deserialize(Cell.one_from_boc(tx.boc).begin_parse())
    message: MessageAny | None = parsed.in_msg
    return message


def _change(tx: TxRecord, previous: Params | None) -> tuple[RootChange | None, Params | None]:
    """The change ``tx`` made (None: not an owner change) and the parameters known after it."""
    message = _inbound(tx)
    if message is None or not message.is_internal:
        return None, previous
    sender = message.info.src.to_str() if message.info.src is not None else "—"

    def change(op: str, code: int | None, argument: str) -> RootChange:
        return RootChange(tx.now, tx.lt, op, code, argument, tx.hash, sender)

    body = message.body
    if (
        body.begin_parse().remaining_bits < 32
    ):  # a plain transfer: the deployment when it carries the root's StateInit
        if message.init is not None:
            return change("deploy", None, "initial lists and parameters"), previous
        return None, previous
    try:
        decoded = decode_body(body)
    except MessageError:
        code = body.begin_parse().preload_uint(32)
        # An owner op this CLI does not know (a newer root): listed by its code, never dropped.
        return change(f"op 0x{code:08x}", code, "—"), previous
    words = OP_WORDS.get(decoded.op)
    if words is None:
        return None, previous  # not a root op (e.g. excesses coming back)
    argument = _argument(decoded.op, decoded.fields, previous)
    params = decoded.fields.get("params", previous)
    return change(words, int(decoded.op), argument), params


def root_changes(transactions: Iterable[TxRecord]) -> list[RootChange]:
    """The accepted owner changes in ``transactions`` (any order), oldest first."""
    changes: list[RootChange] = []
    params: Params | None = None
    for tx in sorted(transactions, key=lambda t: t.lt):
        if not tx.success or tx.aborted or tx.bounced_in:
            continue  # refused: the root's lists did not change
        change, params = _change(tx, params)
        if change is not None:
            changes.append(change)
    return changes
