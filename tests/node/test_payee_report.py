"""check_payee_report: the proxy's judgement of the statement a payee says it holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.chain import KeyPair, Op, Wallet, parse_address, sign
from cocoon.node.statements import BooksRolledBack, ClaimsUnsigned, check_payee_report, statement_params

PROXY_KEY = KeyPair.from_seed(bytes(range(32)))
PROXY_SC = str(Wallet(KeyPair.from_seed(bytes([1]) * 32)).address.to_str())  # type: ignore[no-untyped-call]
TARGET = str(Wallet(KeyPair.from_seed(bytes([2]) * 32)).address.to_str())  # type: ignore[no-untyped-call]
OTHER = str(Wallet(KeyPair.from_seed(bytes([3]) * 32)).address.to_str())  # type: ignore[no-untyped-call]


def _held(
    counter: int, *, key: KeyPair = PROXY_KEY, target: str = TARGET, proxy: str = PROXY_SC
) -> dict[str, str]:
    msg = sign(key, Op.WORKER_PAYOUT_SIGNED, target=parse_address(target), counter=counter)
    return statement_params(proxy_contract=proxy, signing_key=key.public, message=msg)


def _check(held: object, books: int) -> int:
    statement = check_payee_report(
        held, signing_key=PROXY_KEY.public, proxy_contract=PROXY_SC, target=TARGET, books_tokens=books
    )
    return statement.counter


@given(counter=st.integers(0, 2**40), books=st.integers(0, 2**40))
def test_a_statement_we_signed_passes_exactly_when_our_books_cover_it(counter: int, books: int) -> None:
    if counter <= books:
        assert _check(_held(counter), books) == counter
    else:
        with pytest.raises(BooksRolledBack, match="rolled back"):
            _check(_held(counter), books)


@pytest.mark.parametrize(
    "held",
    [
        _held(5, key=KeyPair.from_seed(bytes([9]) * 32)),  # the payee's own key under our contract's name
        _held(5, target=OTHER),  # another payee's statement
        _held(5, proxy=OTHER),  # another proxy contract's
        {**_held(5), "message": "!!"},  # not base64
        {
            **_held(5),
            "signing_key": PROXY_KEY.public.hex(),
            "message": _held(6, key=KeyPair.generate())["message"],
        },
        "a statement",
        {},
    ],
    ids=["own-key", "other-target", "other-proxy", "bad-base64", "mis-signed", "not-a-mapping", "empty"],
)
def test_a_statement_we_never_signed_for_this_payee_is_a_claim_too_much(held: object) -> None:
    with pytest.raises(ClaimsUnsigned):
        _check(held, 10**9)
