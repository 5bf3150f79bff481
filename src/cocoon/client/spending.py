"""What the client has spent: counters, the last receipts, and the daily limits (``budget``)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from cocoon.client.budget import ALL_KEYS, BudgetStore, Reservation

__all__ = ["Spending"]


class Spending:
    """One per client; the API records each answer here. ``budget`` is None without limits."""

    def __init__(self, budget: BudgetStore | None = None) -> None:
        self.budget = budget
        self.counters = {"requests": 0, "succeeded": 0, "failed": 0, "spent_nano": 0}
        self.receipts: deque[dict[str, Any]] = deque(maxlen=1000)

    def left(self, scope: str = ALL_KEYS) -> int | None:
        return None if self.budget is None else self.budget.left(scope)

    async def reserve(self, amount: int, key_scope: str | None) -> Reservation | None:
        return None if self.budget is None else await self.budget.reserve(amount, key_scope)

    def record(
        self, reservation: Reservation | None, cost_nano: int, receipt: Mapping[str, Any], *, ok: bool = True
    ) -> None:
        """An answer was billed ``cost_nano`` (``ok``: it was not an error answer such as a 400)."""
        if reservation is not None and self.budget is not None:
            self.budget.settle_soon(reservation, cost_nano)
        self.counters["spent_nano"] += cost_nano
        self.counters["succeeded" if ok else "failed"] += 1
        self.receipts.append({"time": time.time(), "cost_nano": cost_nano, **dict(receipt)})

    def failed(self, reservation: Reservation | None, *, billed: bool) -> None:
        """A request failed; ``billed``: part of it may have been charged (cost unknown: keep it all)."""
        self.counters["failed"] += 1
        if reservation is not None and self.budget is not None:
            self.budget.settle_soon(reservation, reservation.amount if billed else 0)
