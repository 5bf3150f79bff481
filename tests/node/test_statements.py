"""Payment statements held by payees: parsing and signature checks, the durable store, rollbacks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cocoon.chain import KeyPair, Op, default_params, sign, state_init_boc, worker_contract
from cocoon.chain import parse_address as addr
from cocoon.node.statements import (
    STORE_NAME,
    Statement,
    StatementError,
    StatementRolledBack,
    StatementStore,
    statement_params,
)

PROXY_SC = addr("0:" + "11" * 32)
OWNER = addr("0:" + "22" * 32)
KEY = KeyPair.from_seed(bytes(range(32)))
DEPLOYABLE = worker_contract(OWNER, PROXY_SC, KEY.public, default_params())


def _params(counter: int, key: KeyPair = KEY, op: Op = Op.WORKER_PAYOUT_SIGNED) -> dict[str, str]:
    msg = sign(key, op, target=DEPLOYABLE.address, counter=counter)
    return statement_params(
        proxy_contract=PROXY_SC.to_str(),  # type: ignore[no-untyped-call]
        signing_key=KEY.public,
        message=msg,
        state_init=state_init_boc(DEPLOYABLE.state_init),
    )


def test_a_statement_round_trips_and_is_checked() -> None:
    statement = Statement.from_params(_params(42))
    assert statement.counter == 42 and statement.signing_key == KEY.public
    assert statement.target == "0:" + DEPLOYABLE.address.hash_part.hex()
    assert Statement.from_params(statement.to_params()) == statement


@pytest.mark.parametrize(
    "broken",
    [
        {"signing_key": "00" * 32},  # not the key that signed it
        {"message": "not base64!"},
        {"message": "AAAA"},  # base64, not a BOC
        {"proxy_contract": "nowhere"},
        {"signing_key": "zz"},
    ],
)
def test_a_malformed_or_forged_statement_is_refused(broken: dict[str, str]) -> None:
    with pytest.raises(StatementError):
        Statement.from_params({**_params(5), **broken})


def test_a_statement_signed_by_another_key_or_of_another_kind_is_refused() -> None:
    with pytest.raises(StatementError):
        Statement.from_params(_params(5, key=KeyPair.from_seed(bytes(32))))
    with pytest.raises(StatementError, match="not a payment statement"):
        Statement.from_params(_params(5, op=Op.PROXY_CLOSE_REQUEST_SIGNED))


def test_a_state_init_of_another_contract_is_refused() -> None:
    other = worker_contract(addr("0:" + "33" * 32), PROXY_SC, KEY.public, default_params())
    params = {
        **_params(5),
        "state_init": statement_params(
            proxy_contract=PROXY_SC.to_str(),  # type: ignore[no-untyped-call]
            signing_key=KEY.public,
            message=sign(KEY, Op.WORKER_PAYOUT_SIGNED, target=DEPLOYABLE.address, counter=5),
            state_init=state_init_boc(other.state_init),
        )["state_init"],
    }
    with pytest.raises(StatementError, match="StateInit"):
        Statement.from_params(params)


def test_the_store_keeps_the_highest_and_refuses_a_rollback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = StatementStore(home)
    assert store.load() == {}
    assert store.record(Statement.from_params(_params(10)))
    assert stat.S_IMODE((home / STORE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not store.record(Statement.from_params(_params(10)))  # the same: nothing to write
    assert store.record(Statement.from_params(_params(12)))
    with pytest.raises(StatementRolledBack, match="rolled back"):
        store.record(Statement.from_params(_params(11)))
    (held,) = StatementStore(home).load().values()  # what a new process reads
    assert held.counter == 12


def test_a_damaged_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STORE_NAME).write_text('{"statements": {"x": {"message": "AAAA"}}}')
    with pytest.raises(StatementError, match=STORE_NAME):
        StatementStore(tmp_path).load()
