"""Group commit: concurrent writes share one transaction and one disk sync, each still on its own."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import InsufficientFunds, LedgerError, RequestConflict, UnknownRequest
from cocoon.proxy.ledger import AsyncLedger, BillingLedger, RequestState, Settlement

from .helpers import PARAMS, TON, charge_of, funded_ledger


def _record_sql(ledger: BillingLedger) -> list[str]:
    """Every statement the writing connections run from now on, each prefixed by the sync mode of the
    connection that ran it ("2:" FULL, durable; "1:" NORMAL, light)."""
    statements: list[str] = []
    ledger._conn = _Recording(ledger._conn, statements)  # type: ignore[assignment]
    ledger._light = _Recording(ledger._light, statements)  # type: ignore[assignment]
    return statements


def _count_wal_syncs(ledger: BillingLedger, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    calls: list[None] = []
    original = ledger._sync_wal

    def spy() -> None:
        calls.append(None)
        original()

    monkeypatch.setattr(ledger, "_sync_wal", spy)
    return calls


async def test_concurrent_writes_share_a_group_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    async with AsyncLedger(funded_ledger(tmp_path / "b.db", "alice", balance=TON, stake=TON)) as led:
        gate, entered = threading.Event(), threading.Event()

        def block() -> None:
            entered.set()
            gate.wait()

        blocked = asyncio.ensure_future(led._on_writer(block))  # the writer is busy: the rest queue
        await asyncio.to_thread(entered.wait, 10)
        reserving = asyncio.gather(
            *(led.reserve(f"r{i}", "alice", TON // 4, 1.0) for i in range(6)), return_exceptions=True
        )
        await asyncio.sleep(0)
        gate.set()
        await blocked
        results = await reserving
        assert [isinstance(r, InsufficientFunds) for r in results] == [False] * 4 + [True] * 2
        assert led.groups == 2  # six reservations (two refused) in one transaction after the first
        settled = await asyncio.gather(
            *(led.settle(f"r{i}", "w1", charge_of(10, i), 2.0) for i in range(4)),
            led.settle("r0", "w1", charge_of(99, 99), 2.0),  # a conflicting repeat fails alone
            return_exceptions=True,
        )
        assert all(getattr(r, "state", None) is RequestState.SETTLED for r in settled[:4])
        assert isinstance(settled[4], RequestConflict)
        totals = await led.client_totals("alice")
        assert totals.reserved_nano == 0
        assert totals.tokens == sum(charge_of(10, i).total_adjusted for i in range(4))


def test_a_failing_call_leaves_no_trace_and_the_others_commit(tmp_path: Path) -> None:
    with funded_ledger(tmp_path / "b.db", "alice") as ledger:

        def half_written() -> None:
            with ledger._tx() as db:
                db.execute("UPDATE clients SET reserved=reserved+777 WHERE client='alice'")
                raise ValueError("changed its mind")

        results = ledger.run_group(
            [
                (functools.partial(ledger.reserve, "r1", "alice", 10, 1.0), False),
                (half_written, True),
                (functools.partial(ledger.reserve, "r2", "alice", 20, 1.0), False),
            ]
        )
        assert isinstance(results[1], ValueError)
        assert [r.reserved_nano for r in (results[0], results[2])] == [10, 20]
        assert ledger.client_totals("alice").reserved_nano == 30  # not 807: the failed call was undone


def test_a_lone_failing_call_leaves_no_trace(tmp_path: Path) -> None:
    """A group of one call runs without a savepoint: its failure rolls back all it wrote, and the
    store goes on as before (its next transaction commits)."""
    with funded_ledger(tmp_path / "b.db", "alice") as ledger:

        def half_written() -> None:
            with ledger._tx() as db:
                db.execute("UPDATE clients SET reserved=reserved+777 WHERE client='alice'")
                raise ValueError("changed its mind")

        (result,) = ledger.run_group([(half_written, True)])
        assert isinstance(result, ValueError)
        assert ledger.client_totals("alice").reserved_nano == 0
        (unknown,) = ledger.settle_many([Settlement("nope", "w1", charge_of(1, 1), usage=None)], 2.0)
        assert isinstance(unknown, UnknownRequest)
        (reserved,) = ledger.run_group([(functools.partial(ledger.reserve, "r1", "alice", 10, 1.0), False)])
        assert reserved.reserved_nano == 10 and ledger.client_totals("alice").reserved_nano == 10


def test_one_durable_commit_for_a_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with funded_ledger(tmp_path / "b.db", "alice") as ledger:
        for i in range(8):
            ledger.reserve(f"r{i}", "alice", 10**6, 1.0)
        statements = _record_sql(ledger)
        wal_syncs = _count_wal_syncs(ledger, monkeypatch)
        ledger.run_group(
            [(functools.partial(ledger.settle, f"r{i}", "w1", charge_of(1, i), 2.0), True) for i in range(8)]
        )
        assert statements.count("2:COMMIT") == 1 and "1:COMMIT" not in statements  # one commit, synced
        assert ledger.worker_totals("w1").tokens == sum(charge_of(1, i).total_adjusted for i in range(8))
        statements.clear()
        ledger.run_group([(functools.partial(ledger.reserve, "r9", "alice", 5, 3.0), False)])
        assert statements.count("1:COMMIT") == 1 and "2:COMMIT" not in statements  # waits for no disk
        assert not any("PRAGMA" in sql for sql in statements)  # neither connection switches its mode
        assert wal_syncs == []


def test_a_durable_write_in_a_light_group_still_reaches_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with funded_ledger(tmp_path / "b.db", "alice") as ledger:
        ledger.reserve("r1", "alice", 10**6, 1.0)
        wal_syncs = _count_wal_syncs(ledger, monkeypatch)
        statements = _record_sql(ledger)
        settle = functools.partial(ledger.settle, "r1", "w1", charge_of(3, 4), 2.0)
        [record] = ledger.run_group([(settle, False)])  # mislabelled as light by its caller
        assert record.state is RequestState.SETTLED
        assert "1:COMMIT" in statements and len(wal_syncs) == 1  # the WAL was synced after the commit


def test_a_failed_commit_fails_every_call_and_writes_nothing(tmp_path: Path) -> None:
    with funded_ledger(tmp_path / "b.db", "alice") as ledger:
        real = ledger._conn
        ledger._conn = _FailingCommit(real)  # type: ignore[assignment]
        reserve = functools.partial(ledger.reserve, "r1", "alice", 10, 1.0)
        settle = functools.partial(ledger.settle, "r1", "w1", charge_of(1, 1), 2.0)
        results = ledger.run_group([(reserve, False), (settle, True)])
        ledger._conn = real
        assert all(isinstance(r, LedgerError) for r in results)
        assert ledger.request("r1") is None and ledger.client_totals("alice").reserved_nano == 0


class _Recording:
    def __init__(self, conn: sqlite3.Connection, statements: list[str]) -> None:
        self._conn = conn
        self._statements = statements
        self._mode = conn.execute("PRAGMA synchronous").fetchone()[0]

    def execute(self, sql: str, *args: Any) -> Any:
        self._statements.append(f"{self._mode}:{sql}")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _FailingCommit:
    """A connection whose COMMIT fails (a full disk at the worst moment)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


# -- property: any split of a history into groups ends where the calls one by one end ------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "settle", "fail", "release", "progress"]),
        st.integers(0, 5),  # request
        st.integers(0, 3 * TON),  # amount or tokens
    ),
    min_size=1,
    max_size=30,
)


def _call(ledger: BillingLedger, op: tuple[str, int, int]) -> tuple[Callable[[], Any], bool]:
    kind, index, amount = op
    rid, n = f"r{index}", amount % 50
    calls: dict[str, tuple[Callable[[], Any], bool]] = {
        "reserve": (functools.partial(ledger.reserve, rid, "alice", amount, 1.0), False),
        "settle": (functools.partial(ledger.settle, rid, "w1", charge_of(n, n), 2.0), True),
        "fail": (functools.partial(ledger.fail, rid, charge_of(n, 0), worker="w1", now=2.0), True),
        "release": (functools.partial(ledger.release, rid, now=2.0), True),
        "progress": (
            lambda: (
                ledger.assign_worker(rid, "w1", coefficient=1000, params=PARAMS, now=1.5),
                ledger.record_progress(rid, prompt_tokens=n, completion_tokens=n, now=1.5),
            ),
            True,
        ),
    }
    return calls[kind]


def _outcome(result: object) -> object:
    return type(result).__name__ if isinstance(result, Exception) else result


def _state(ledger: BillingLedger) -> tuple[object, ...]:
    return (ledger.client_totals("alice"), ledger.workers(), [ledger.request(f"r{i}") for i in range(6)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, cuts=st.lists(st.integers(1, 30), max_size=10))
def test_grouped_history_equals_the_history_one_call_at_a_time(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    folder = tmp_path_factory.mktemp("group")
    with funded_ledger(folder / "one.db", "alice", balance=5 * TON, stake=5 * TON) as one:
        alone = [_outcome(_run_alone(one, op)) for op in ops]
        expected = _state(one)
    with funded_ledger(folder / "grouped.db", "alice", balance=5 * TON, stake=5 * TON) as grouped:
        calls = [_call(grouped, op) for op in ops]
        together: list[object] = []
        start = 0
        for cut in [*sorted(set(cuts)), len(calls)]:
            if cut > start:
                together += [_outcome(r) for r in grouped.run_group(calls[start:cut])]
                start = cut
        assert together == alone
        assert _state(grouped) == expected


def _run_alone(ledger: BillingLedger, op: tuple[str, int, int]) -> object:
    call, _ = _call(ledger, op)
    try:
        return call()
    except Exception as exc:
        return exc


async def test_a_reader_on_a_new_thread_never_waits_for_an_open_group(tmp_path: Path) -> None:
    async with AsyncLedger(funded_ledger(tmp_path / "b.db", "alice")) as led:
        await led.reserve("r1", "alice", 10**6, 1.0)
        gate, inside = threading.Event(), threading.Event()

        def hold() -> None:
            inside.set()
            gate.wait(30)

        blocked = asyncio.ensure_future(led._on_writer(hold))  # a group is open, holding the writer
        await asyncio.to_thread(inside.wait, 30)
        seen: list[object] = []
        reader = threading.Thread(target=lambda: seen.append(led.sync.request("r1")))  # its first read
        reader.start()
        await asyncio.to_thread(reader.join, 10)
        alive = reader.is_alive()
        gate.set()
        await blocked
        assert not alive and getattr(seen[0], "state", None) is RequestState.RESERVED
