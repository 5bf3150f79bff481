"""One TON format for people, exact integers of nanoTON inside."""

from __future__ import annotations

import pytest

from cocoon.core.amounts import format_ton, parse_ton


@pytest.mark.parametrize(
    ("nano", "shown"),
    [
        (0, "0 TON"),
        (50 * 10**9, "50 TON"),
        (999_735_865_000, "999.735865 TON"),
        (1, "0.000000001 TON"),
        (1_500_000_000, "1.5 TON"),
        (-2_000_000_001, "-2.000000001 TON"),
    ],
)
def test_format_ton_shows_every_significant_decimal_and_no_more(nano: int, shown: str) -> None:
    assert format_ton(nano) == shown


@pytest.mark.parametrize(
    ("text", "nano"),
    [
        ("1.5", 1_500_000_000),
        ("0", 0),
        (" 7 ", 7 * 10**9),
        ("0.000000001", 1),
        ("123456789012345678901.123456789", 123456789012345678901_123456789),
    ],
)
def test_parse_ton_is_exact(text: str, nano: int) -> None:
    assert parse_ton(text) == nano
    assert parse_ton(format_ton(nano).removesuffix(" TON")) == nano


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "0.0000000001", "NaN", "Infinity", "1e400", "123456789012345678901.1234567891"]
)
def test_parse_ton_refuses_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="TON"):
        parse_ton(text)
