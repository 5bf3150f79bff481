"""The relay's first progress record writes the assignment with it (one commit): the merged call must
leave the store exactly as the two calls would, and refuse exactly what they refuse."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import InsufficientFunds, ProxyError, RequestConflict
from cocoon.proxy.ledger import AsyncLedger, BillingLedger, RequestState, Settlement
from cocoon.proxy.pricing import MAX_NANO, MAX_TOKENS, Charge, TokenCounts, charge_is_valid, counts_are_valid

from .helpers import PARAMS, charge_of, funded_ledger

_STEP = st.tuples(
    st.sampled_from(["w1", "w2", "", "\x00"]),
    st.integers(-5, 3000),  # coefficient
    st.integers(-2, 60),  # prompt
    st.integers(-2, 60),  # completion
)


def _two(led: BillingLedger, worker: str, coef: int, prompt: int, completion: int, now: float) -> list[bool]:
    """Which of the two calls refused (an assignment to a finished request is no refusal: the merged
    call does nothing there, as record_progress does)."""
    refused = []
    for call in (
        lambda: led.assign_worker("r1", worker, coefficient=coef, params=PARAMS, now=now),
        lambda: led.record_progress("r1", prompt_tokens=prompt, completion_tokens=completion, now=now),
    ):
        try:
            call()
        except RequestConflict:
            refused.append(led.request("r1").state is RequestState.RESERVED)  # type: ignore[union-attr]
        except ProxyError:
            refused.append(True)
        else:
            refused.append(False)
    return refused


def _merged(led: BillingLedger, worker: str, coef: int, prompt: int, completion: int, now: float) -> bool:
    try:
        led.assign_and_record_progress(
            "r1",
            worker,
            coefficient=coef,
            params=PARAMS,
            prompt_tokens=prompt,
            completion_tokens=completion,
            now=now,
        )
    except ProxyError:
        return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=5), settle_after=st.integers(0, 5))
def test_merged_progress_equals_assign_then_record(
    steps: list[tuple[str, int, int, int]], settle_after: int
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        funded_ledger(Path(tmp) / "a.db", "alice") as a,
        funded_ledger(Path(tmp) / "b.db", "alice") as b,
    ):
        for led in (a, b):
            led.reserve("r1", "alice", 10**9, 1.0)
        for i, (worker, coef, prompt, completion) in enumerate(steps):
            if i == settle_after:
                for led in (a, b):
                    led.release("r1", now=2.0)
            now = 3.0 + i
            refused = _two(a, worker, coef, prompt, completion, now)
            refused_merged = _merged(b, worker, coef, prompt, completion, now)
            assert refused_merged == any(refused), (refused, refused_merged)
            if any(refused) and not all(refused):
                return  # one of the two wrote alone (never the relay's case): the histories part here
            assert a.request("r1") == b.request("r1")
            assert a.client_totals("alice") == b.client_totals("alice")


_INTS = st.one_of(
    st.integers(-3, 12), st.just(MAX_NANO), st.just(MAX_NANO + 1), st.just(MAX_TOKENS + 1), st.booleans()
)


def _accepted(cls: Any, *values: Any) -> bool:
    try:
        cls(*values)
    except ProxyError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(values=st.lists(_INTS, min_size=8, max_size=8))
def test_fast_checks_accept_exactly_what_the_constructors_accept(values: list[Any]) -> None:
    """The one-expression checks the hot path uses stand for the constructors' detailed ones."""
    charge = object.__new__(Charge)
    usage = object.__new__(TokenCounts)
    for name, value in zip(("prompt", "cached", "completion", "reasoning"), values, strict=False):
        object.__setattr__(usage, name, value)
    for f, value in zip(fields(Charge), values, strict=True):
        object.__setattr__(charge, f.name, value)
    assert charge_is_valid(charge) == _accepted(Charge, *values)
    assert counts_are_valid(usage) == _accepted(TokenCounts, *values[:4])


def test_reserve_refuses_in_the_old_order(tmp_path: Path) -> None:
    """A reservation inserts its row first (no lookup for a new id): a known id still answers as a
    known id (even for an unknown client), an unknown client as a client without funds, and a
    refused reservation leaves no row."""
    with funded_ledger(tmp_path / "a.db", "alice") as led:
        first = led.reserve("r1", "alice", 500, 1.0)
        assert led.reserve("r1", "alice", 500, 2.0) == first
        for client, amount in (("nobody", 500), ("alice", 501)):
            with pytest.raises(RequestConflict):
                led.reserve("r1", client, amount, 2.0)
        with pytest.raises(InsufficientFunds) as info:
            led.reserve("r2", "nobody", 1, 2.0)
        assert info.value.available == 0
        with pytest.raises(InsufficientFunds):
            led.reserve("r3", "alice", 10**30 // 10**12, 2.0)
        assert led.request("r2") is None and led.request("r3") is None
        assert led.client_totals("alice").reserved_nano == 500 and led.client_totals("alice").requests == 1


async def test_a_quiet_loop_syncs_its_bill_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the loop quiet (one request in flight) a bill commits and syncs on the loop's thread, not
    the writer's; otherwise on the writer. Durable either way: answered only after the sync."""
    async with AsyncLedger(funded_ledger(tmp_path / "b.db", "alice")) as led:
        threads: list[int] = []
        synced: list[None] = []
        real_sync, real_settle = led.sync._sync_wal, led.sync.settle_many
        monkeypatch.setattr(led.sync, "_sync_wal", lambda: (synced.append(None), real_sync())[1])

        def settle_many(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.get_ident())
            return real_settle(*args, **kwargs)

        monkeypatch.setattr(led.sync, "settle_many", settle_many)
        for i, quiet in enumerate((False, True)):
            led.quiet = lambda quiet=quiet: quiet  # type: ignore[misc]
            await led.reserve(f"r{i}", "alice", 10**6, 1.0)
            full = led.sync._conn.execute("PRAGMA synchronous").fetchone()[0]
            (done,) = await led.settle_many([Settlement(f"r{i}", "w1", charge_of(1, 2), usage=None)], 2.0)
            assert done.state is RequestState.SETTLED and full == 2  # a FULL commit: synced at COMMIT
        assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()
        assert synced == []  # FULL connection: SQLite synced the WAL itself, no extra sync needed
