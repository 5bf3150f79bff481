# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core leaves Address.to_str unannotated)
"""Accounts keyed by one spelling per wallet, the upgrade that merges old spellings, private store files."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from cocoon.chain import parse_address
from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import BillingLedger, RequestState
from cocoon.proxy.ledger.schema import SCHEMA_VERSION

from .helpers import PARAMS, TON, charge_of

RAW = "0:" + "ab" * 32
WORKER_RAW = "0:" + "cd" * 32


def spellings(raw: str) -> list[str]:
    """Raw (upper-case hex), bounceable, non-bounceable and testnet spellings of one wallet."""
    a = parse_address(raw)
    return [
        raw.upper().replace("0X", "0x"),
        a.to_str(is_bounceable=True),
        a.to_str(is_bounceable=False),
        a.to_str(is_bounceable=True, is_test_only=True, is_url_safe=False),
    ]


def test_one_wallet_in_four_spellings_is_one_account(tmp_path: Path) -> None:
    names = spellings(RAW)
    assert len(set(names)) == 4
    with BillingLedger(tmp_path / "b.db") as led:
        for name in names:
            led.upsert_client(name, contract=spellings(WORKER_RAW)[1], price_per_token=2000, now=1.0)
            led.ensure_client(name, now=1.0, credit=TON)  # credit once, not once per spelling
        assert [c.client for c in led.clients()] == [RAW]
        totals = led.client_totals(names[2])
        assert (totals.balance_nano, totals.stake_nano, totals.contract) == (TON, TON, WORKER_RAW)
        for i, name in enumerate(names):
            led.reserve(f"r{i}", name, 10**6, 2.0)
            led.settle(f"r{i}", spellings(WORKER_RAW)[i], charge_of(10 * (i + 1), 5), 3.0)
        assert [w.worker for w in led.workers()] == [WORKER_RAW]
        assert led.client_totals(RAW).requests == 4
        assert led.worker_totals(spellings(WORKER_RAW)[3]).requests == 4
        # Names that are not addresses stay as they are.
        led.ensure_client("key:00ff", now=1.0)
        assert led.client_totals("key:00ff").client == "key:00ff"


def test_restart_after_unequal_use_settles(tmp_path: Path) -> None:
    """The chain charges the one contract for all spellings' use: the store knows it all, so it settles."""
    path = tmp_path / "b.db"
    names = spellings(RAW)
    with BillingLedger(path) as led:
        led.upsert_client(names[0], contract="", price_per_token=PARAMS.price_per_token, now=1.0)
        led.set_client_chain_state(names[1], balance=100 * TON, stake=10 * TON, charged_tokens=0, now=1.0)
        for i, name in enumerate(names):
            for k in range(i + 1):  # unequal use: 1, 2, 3, 4 requests
                led.reserve(f"r{i}.{k}", name, 10**7, 2.0)
                led.settle(f"r{i}.{k}", "w1", charge_of(100 * (i + 1), 50), 3.0)
        billed = led.client_totals(RAW).tokens
    with BillingLedger(path) as led:
        # The chain charged everything billed so far, whichever spelling it is read under.
        for name in names:
            totals = led.set_client_chain_state(
                name, balance=100 * TON, stake=10 * TON, charged_tokens=billed, now=4.0
            )
            assert totals.charged_tokens == billed and totals.available_nano == 10 * TON


def _v1_store(path: Path, names: list[str]) -> None:
    """A store as version 1 left it: one account per spelling, with requests and snapshots."""
    from cocoon.proxy.ledger.schema import _TABLES

    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_TABLES)
    for i, name in enumerate(names):
        db.execute(
            "INSERT INTO clients (client, contract, price_per_token, balance, stake, charged_tokens, tokens, cost,"
            " requests, snap_tokens, created_at, updated_at) VALUES (?, ?, 2000, ?, ?, ?, ?, ?, 1, ?, 1.0, 1.0)",
            (name, names[0], 5 * TON, 2 * TON, 10, 100 * (i + 1), 200_000 * (i + 1), 100 * (i + 1)),
        )
        db.execute(
            "INSERT INTO requests (request_id, client, worker, model, state, reserved, prompt_adjusted,"
            " total_adjusted, cost, worker_earning, created_at) VALUES (?, ?, ?, 'm', 'settled', 0, ?, ?, ?, ?, 1.0)",
            (f"r{i}", name, name, 100 * (i + 1), 100 * (i + 1), 200_000 * (i + 1), 100_000 * (i + 1)),
        )
        db.execute(
            "INSERT INTO workers (worker, contract, tokens, earnings, requests, created_at, updated_at)"
            " VALUES (?, '', ?, ?, 1, 1.0, 1.0)",
            (name, 100 * (i + 1), 100_000 * (i + 1)),
        )
        db.execute("INSERT INTO snapshots VALUES (1, 'client', ?, ?)", (name, 100 * (i + 1)))
    db.execute("PRAGMA user_version=1")
    db.close()


def test_upgrade_merges_old_spellings(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    names = spellings(RAW)
    _v1_store(path, names)
    with BillingLedger(path) as led:
        (client,) = led.clients()
        assert client.client == RAW and client.contract == RAW
        assert (client.tokens, client.cost_nano, client.requests) == (1000, 2_000_000, 4)
        assert (client.balance_nano, client.stake_nano, client.charged_tokens) == (5 * TON, 2 * TON, 10)
        (worker,) = led.workers()
        assert (worker.worker, worker.tokens, worker.earnings_nano, worker.requests) == (
            RAW,
            1000,
            1_000_000,
            4,
        )
        for i in range(4):
            rec = led.request(f"r{i}")
            assert rec is not None and rec.client == RAW and rec.worker == RAW
        rows = led._debug_rows()
        assert rows["snapshots"] == [(1, "client", RAW, 1000)]
        assert led._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with BillingLedger(path) as led:  # the upgrade runs once
        assert [c.client for c in led.clients()] == [RAW]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerError, match="not supported"):
        BillingLedger(path)


def test_store_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "deeper" / "billing.db"
        with BillingLedger(path) as led:
            led.ensure_client("alice", now=1.0, credit=TON)
            led.reserve("r1", "alice", 1, 1.0)
            led.settle("r1", "w1", charge_of(1, 1), 2.0)
            for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            for d in (path.parent, path.parent.parent):
                assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        # A store left world-readable by an older version is tightened on open.
        os.chmod(path, 0o644)
        with BillingLedger(path) as led:
            assert led.request("r1") is not None
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_request_states_survive_reopen_after_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    _v1_store(path, spellings(RAW)[:1])
    with BillingLedger(path) as led:
        assert led.request("r0").state is RequestState.SETTLED  # type: ignore[union-attr]
        assert led.request("r0").progress is None  # type: ignore[union-attr]
