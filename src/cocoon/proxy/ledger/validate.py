"""Input checks for every ledger operation: bad input raises :class:`LedgerInputError` before anything is written.

Account keys (clients, workers) and contract addresses that are TON addresses are normalised to the one raw
form ``"<wc>:<64 hex>"`` (:func:`cocoon.chain.address_key`), so the raw, bounceable, non-bounceable and
testnet spellings of one wallet are one account. Keys that are not addresses (``key:<hex>`` ids of clients
without a wallet, test names) are kept as they are.
"""

from __future__ import annotations

import functools
import math
from dataclasses import fields

from cocoon.chain import address_key
from cocoon.proxy.errors import LedgerInputError
from cocoon.proxy.pricing import MAX_NANO, Charge, PriceParams, TokenCounts, charge_is_valid, counts_are_valid

__all__ = [
    "MAX_ID_LEN",
    "SESSION_HASH_LEN",
    "account",
    "add",
    "charge",
    "ident",
    "integer",
    "price_params",
    "session_hash",
    "timestamp",
    "usage",
]

MAX_ID_LEN = 256
SESSION_HASH_LEN = 32


def integer(name: str, value: object, upper: int = MAX_NANO) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LedgerInputError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value > upper:
        raise LedgerInputError(f"{name} must be in [0, {upper}]")
    return value


# Field names, read once (``dataclasses.fields`` per call costs more than the check itself).
_CHARGE_FIELDS = tuple(f.name for f in fields(Charge))
_USAGE_FIELDS = tuple(f.name for f in fields(TokenCounts))
_PARAMS_FIELDS = tuple(f.name for f in fields(PriceParams))


def ident(name: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise LedgerInputError(f"{name} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise LedgerInputError(f"{name} must not be empty")
    if len(value) > MAX_ID_LEN:
        raise LedgerInputError(f"{name} is longer than {MAX_ID_LEN} characters")
    if not value.isprintable():
        raise LedgerInputError(f"{name} contains control characters")
    return value


@functools.lru_cache(maxsize=4096)  # the same few accounts in every request: parsed once
def normalized(value: str) -> str:
    """The raw form of a TON address; anything that is not an address unchanged."""
    return address_key(value)


def account(name: str, value: object, *, allow_empty: bool = False) -> str:
    """A client, worker or contract key: validated, and normalised when it is a TON address."""
    return normalized(ident(name, value, allow_empty=allow_empty))


def timestamp(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise LedgerInputError(f"now must be a number, got {type(value).__name__}")
    t = float(value)
    if not math.isfinite(t) or t < 0:
        raise LedgerInputError("now must be a finite, non-negative number of seconds")
    return t


def session_hash(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != SESSION_HASH_LEN:
        raise LedgerInputError("session_hash must be 32 bytes")
    return value


def charge(value: object) -> Charge:
    if not isinstance(value, Charge):
        raise LedgerInputError(f"charge must be a Charge, got {type(value).__name__}")
    if charge_is_valid(value):  # what the constructor accepts, checked without building a copy
        return value
    # Charge validates itself, but a caller can bypass a frozen dataclass with object.__setattr__.
    try:
        Charge(*(getattr(value, f) for f in _CHARGE_FIELDS))
    except ValueError as exc:
        raise LedgerInputError(f"invalid charge: {exc}") from exc
    return value


def usage(value: object) -> TokenCounts | None:
    if value is None:
        return None
    if not isinstance(value, TokenCounts):
        raise LedgerInputError(f"usage must be TokenCounts or None, got {type(value).__name__}")
    if counts_are_valid(value):
        return value
    try:
        TokenCounts(*(getattr(value, f) for f in _USAGE_FIELDS))
    except ValueError as exc:
        raise LedgerInputError(f"invalid usage: {exc}") from exc
    return value


def price_params(value: object) -> PriceParams:
    if not isinstance(value, PriceParams):
        raise LedgerInputError(f"params must be PriceParams, got {type(value).__name__}")
    try:
        return PriceParams(*(getattr(value, f) for f in _PARAMS_FIELDS))
    except ValueError as exc:
        raise LedgerInputError(f"invalid price parameters: {exc}") from exc


def add(name: str, a: int, b: int) -> int:
    # Sums are computed here, not in SQL: SQLite silently turns an overflowing integer sum into a REAL.
    total = a + b
    if total > MAX_NANO:
        raise LedgerInputError(f"{name} would overflow int64")
    return total
