"""Hard daily limits: reserved before the request, durable, per API key."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from cocoon.client.budget import ALL_KEYS, BudgetStore, Reservation, key_scope, reservation_nano
from cocoon.oai import ApiError, ErrorKind


def _store(path: Path, day: list[str], **limits: int) -> BudgetStore:
    scopes = {ALL_KEYS if k == "all" else key_scope(k): v for k, v in limits.items()}
    return BudgetStore(path / "budget.sqlite", scopes, today=lambda: day[0])


async def test_a_reservation_that_could_overshoot_is_refused_and_holds_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, ["d1"], all=100)
    held = await store.reserve(60)
    with pytest.raises(ApiError) as info:
        await store.reserve(41)
    assert info.value.kind is ErrorKind.BUDGET_EXCEEDED and info.value.status == 402
    assert store.left() == 40
    store.settle_soon(held, 25)  # the real cost replaces the reservation
    await store.flush()
    assert store.left() == 75
    await store.reserve(75)
    assert store.left() == 0
    store.close()


async def test_spending_survives_a_restart_and_open_reservations_count_as_spent(tmp_path: Path) -> None:
    day = ["d1"]
    store = _store(tmp_path, day, all=100)
    store.settle_soon(await store.reserve(30), 30)
    await store.reserve(20)  # in flight when the process dies
    store.close()
    again = _store(tmp_path, day, all=100)
    assert again.left() == 50 and again.spent() == 50
    day[0] = "d2"
    assert again.left() == 100  # a new UTC day
    again.close()


async def test_each_key_has_its_own_limit_under_the_global_one(tmp_path: Path) -> None:
    store = _store(tmp_path, ["d1"], all=100, **{"sk-team-aaaa": 30})
    team = key_scope("sk-team-aaaa")
    await store.reserve(30, team)
    with pytest.raises(ApiError, match="API key"):
        await store.reserve(1, team)
    await store.reserve(70, key_scope("sk-other-bbbb"))  # no own limit: only the global one
    with pytest.raises(ApiError, match="daily budget"):
        await store.reserve(1, key_scope("sk-other-bbbb"))
    assert store.left(team) == 0 and store.left() == 0
    store.close()


def test_reservation_is_the_proxys_bound() -> None:
    # adjust(max_tokens + body_bytes, max_coefficient, 10000) × price_per_token, as the proxy reserves.
    assert reservation_nano(max_tokens=100, body_bytes=50, max_coefficient=2000, price_per_token=3) == 900
    assert key_scope("sk-x") != key_scope("sk-y") and "sk-x" not in key_scope("sk-x")


async def test_a_reservation_whose_caller_left_while_it_was_written_is_given_back(tmp_path: Path) -> None:
    """The app hangs up while its hold is on the writer: the hold is still written, then released,
    instead of being held until a restart counts it as spent."""
    store = _store(tmp_path, ["d1"], all=100)
    writing, written = threading.Event(), threading.Event()
    reserve = store._reserve

    def slow_reserve(held: Reservation) -> Reservation:
        writing.set()
        written.wait(5)
        return reserve(held)

    store._reserve = slow_reserve  # type: ignore[method-assign]
    reserving = asyncio.ensure_future(store.reserve(60))
    await asyncio.to_thread(writing.wait, 5)  # the writer is on it
    reserving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reserving
    written.set()
    await store.flush()  # the hold was written ...
    await store.flush()  # ... and its release, queued when it was, after it
    assert store.left() == 100 and store.spent() == 0
    store.close()
