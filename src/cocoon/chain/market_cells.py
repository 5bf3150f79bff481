# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""The root contract's market ref, cell by cell (``contracts/root.tolk``).

``^(service_classes:HashmapE(128 → price_multiplier:32 target_ttft_ms:32 min_tokens_per_s:32
max_retries:8 min_success_rate_permille:16) collateral:Maybe ^(min_worker_stake:Coins
dispute_window:32 max_slash_permille:16))``; a class name is its ASCII bytes zero-padded to 16 as the
key. A root that holds no market ref, no classes or no collateral gets the defaults of
:mod:`cocoon.chain.market` for what it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cocoon.chain._ton import Builder, Cell, HashMap, Slice, begin_cell
from cocoon.chain.errors import MessageError
from cocoon.chain.market import DEFAULT_COLLATERAL, DEFAULT_SERVICE_CLASSES, Collateral, ServiceClass

__all__ = [
    "DEFAULT_MARKET",
    "MarketTerms",
    "class_name_key",
    "class_name_of_key",
    "collateral_bits",
    "market_cell",
    "parse_collateral",
    "parse_market",
    "parse_service_class",
    "service_class_bits",
]

_NAME_BYTES = 16


@dataclass(frozen=True, slots=True)
class MarketTerms:
    """What the root's market ref says, defaults filled in; ``*_held`` say whether the root sets them."""

    service_classes: Mapping[str, ServiceClass]
    collateral: Collateral
    classes_held: bool = False
    collateral_held: bool = False


DEFAULT_MARKET = MarketTerms(DEFAULT_SERVICE_CLASSES, DEFAULT_COLLATERAL)


def class_name_key(name: str) -> int:
    """The 128-bit dictionary key of a class name (validated as :class:`ServiceClass` does)."""
    ServiceClass(name=name)  # raises ValueError on a bad name
    return int.from_bytes(name.encode().ljust(_NAME_BYTES, b"\0"), "big")


def class_name_of_key(key: int) -> str:
    name = key.to_bytes(_NAME_BYTES, "big").rstrip(b"\0").decode("ascii", errors="replace")
    ServiceClass(name=name)
    return name


def service_class_bits(b: Builder, sc: ServiceClass) -> Builder:
    return (
        b.store_uint(sc.price_multiplier, 32)
        .store_uint(sc.target_ttft_ms, 32)
        .store_uint(sc.min_tokens_per_s, 32)
        .store_uint(sc.max_retries, 8)
        .store_uint(sc.min_success_rate_permille, 16)
    )


def collateral_bits(b: Builder, c: Collateral) -> Builder:
    return (
        b.store_coins(c.min_worker_stake)
        .store_uint(c.dispute_window_s, 32)
        .store_uint(c.max_slash_permille, 16)
    )


def market_cell(classes: Mapping[str, ServiceClass] | None, collateral: Collateral | None) -> Cell:
    """The market ref as the root stores it (``None`` = not held: defaults apply)."""
    d: Cell | None = None
    if classes:
        hm = HashMap(128, value_serializer=lambda v, b: b.store_cell(v))
        for name, sc in classes.items():
            if sc.name != name:
                raise MessageError(f"service class {sc.name!r} is filed under {name!r}")
            hm.set_int_key(class_name_key(name), service_class_bits(begin_cell(), sc).end_cell())
        d = hm.serialize()
    col = None if collateral is None else collateral_bits(begin_cell(), collateral).end_cell()
    return begin_cell().store_maybe_ref(d).store_maybe_ref(col).end_cell()


def parse_service_class(name: str, v: Slice, *, exact: bool = True) -> ServiceClass:
    sc = ServiceClass(
        name=name,
        price_multiplier=v.load_uint(32),
        target_ttft_ms=v.load_uint(32),
        min_tokens_per_s=v.load_uint(32),
        max_retries=v.load_uint(8),
        min_success_rate_permille=v.load_uint(16),
    )
    if exact and (v.remaining_bits or v.remaining_refs):
        raise MessageError(f"service class {name!r} has trailing data")
    return sc


def parse_collateral(s: Slice, *, exact: bool = True) -> Collateral:
    c = Collateral(
        min_worker_stake=s.load_coins(), dispute_window_s=s.load_uint(32), max_slash_permille=s.load_uint(16)
    )
    if exact and (s.remaining_bits or s.remaining_refs):
        raise MessageError("collateral terms have trailing data")
    return c


def parse_market(cell: Cell | None) -> MarketTerms:
    """The root's market ref (or its absence) as terms, defaults where the root holds none.
    Raises ValueError / MessageError on malformed cells (callers wrap them)."""
    if cell is None:
        return DEFAULT_MARKET
    s = cell.begin_parse()
    d = s.load_dict(128, key_deserializer=lambda k: k, value_deserializer=lambda v: v)
    col_ref = s.load_maybe_ref()
    if s.remaining_bits or s.remaining_refs:
        raise MessageError("market terms have trailing data")
    classes: dict[str, ServiceClass] = {}
    for k, v in (d or {}).items():
        name = class_name_of_key(int(k, 2) if isinstance(k, str) else int(k))
        classes[name] = parse_service_class(name, v)
    collateral = DEFAULT_COLLATERAL if col_ref is None else parse_collateral(col_ref.begin_parse())
    return MarketTerms(
        service_classes=dict(sorted(classes.items())) if classes else DEFAULT_SERVICE_CLASSES,
        collateral=collateral,
        classes_held=bool(classes),
        collateral_held=col_ref is not None,
    )
