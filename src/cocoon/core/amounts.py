"""Amounts of Toncoin: one way to read them from people and one way to show them.

Everything inside Cocoon counts integer nanoTON (1 TON = 10^9 nanoTON), and so does every JSON
output (keys ending in ``_nano``). People type and read TON: :func:`parse_ton` turns ``"1.5"`` into
nanoTON exactly (no float rounding), :func:`format_ton` shows nanoTON as ``"1.5 TON"`` with every
significant decimal and no trailing zeros, so a table never mixes ``50``, ``999.735865`` and
``0.000000000``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

__all__ = ["NANO_PER_TON", "format_ton", "parse_ton"]

NANO_PER_TON = 10**9
MAX_NANO = 2**120 - 1  # TON's Coins type (VarUInteger 16) holds no more


def parse_ton(text: str) -> int:
    """``"1.5"`` → 1500000000; raises ``ValueError`` on anything that is not a non-negative amount
    with at most nine decimals that TON's coin type can hold."""
    try:
        with localcontext(prec=80):  # exact for every amount that can exist (the default 28 digits round)
            value = Decimal(text.strip()) * NANO_PER_TON
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount of TON") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a valid amount of TON (at most 9 decimals, not negative)")
    if value > MAX_NANO:
        raise ValueError(f"{text!r} is more TON than can exist")
    return int(value)


def format_ton(nano: int) -> str:
    """1500000000 → ``"1.5 TON"``; 0 → ``"0 TON"``; exact for every integer amount."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(int(nano)), NANO_PER_TON)
    decimals = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}{'.' + decimals if decimals else ''} TON"
