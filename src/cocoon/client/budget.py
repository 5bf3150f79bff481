"""The client's hard daily spending limits, kept on disk (``<home>/budget.sqlite``).

Each request reserves its most possible cost *before* it is sent — the same bound the proxy holds
its bill to (``adjust(max_tokens + body_bytes, max_coefficient) × price_per_token``) — so the limit
is never overshot, not even by the request that crosses it. When the answer ends, the reservation
becomes the real cost. Limits apply per UTC day over all keys (``"*"``) and per API key.

A reservation still open when the process dies is counted as spent when the store is opened again:
we cannot know what the proxy billed for it, and a hard limit errs on the safe side.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cocoon.oai import ApiError, ErrorKind

__all__ = ["ALL_KEYS", "BudgetStore", "Reservation", "key_scope", "reservation_nano"]

ALL_KEYS = "*"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    day TEXT NOT NULL, scope TEXT NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope)
)
"""


def reservation_nano(*, max_tokens: int, body_bytes: int, max_coefficient: int, price_per_token: int) -> int:
    """The most a request can cost: the proxy's reservation formula (doubles, truncated, as it does)."""
    tokens = int((max_tokens + body_bytes) * (max_coefficient * 0.001) * 10000 * 0.0001)
    return tokens * price_per_token


def key_scope(api_key: str) -> str:
    """The scope a key's spending is kept under: a digest, so the store never holds the key."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _utc_day() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Reservation:
    day: str
    scopes: tuple[str, ...]
    amount: int


class BudgetStore:
    """Durable reservations against per-day limits; every change is committed before it returns."""

    def __init__(self, path: Path, limits: Mapping[str, int], *, today: Callable[[], str] = _utc_day) -> None:
        self._limits = {scope: limit for scope, limit in limits.items() if limit > 0}
        self._today = today
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        # Reservations of a process that died: their cost is unknown, count them as spent.
        self._db.execute("UPDATE spend SET spent = spent + reserved, reserved = 0 WHERE reserved > 0")

    def close(self) -> None:
        self._db.close()

    def limit(self, scope: str) -> int | None:
        return self._limits.get(scope)

    def left(self, scope: str = ALL_KEYS) -> int | None:
        """What ``scope`` may still spend today (None: no limit)."""
        limit = self._limits.get(scope)
        if limit is None:
            return None
        spent, reserved = self._row(self._today(), scope)
        return limit - spent - reserved

    def spent(self, scope: str = ALL_KEYS) -> int:
        spent, reserved = self._row(self._today(), scope)
        return spent + reserved

    def _row(self, day: str, scope: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT spent, reserved FROM spend WHERE day=? AND scope=?", (day, scope)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def reserve(self, amount: int, key_scope: str | None = None) -> Reservation:
        """Hold ``amount`` against the day's limits, or raise ``budget_exceeded`` and hold nothing."""
        if amount < 0:
            raise ValueError("a reservation cannot be negative")
        day = self._today()
        scopes = (ALL_KEYS,) if key_scope is None else (ALL_KEYS, key_scope)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for scope in scopes:
                    limit = self._limits.get(scope)
                    spent, reserved = self._row(day, scope)
                    if limit is not None and spent + reserved + amount > limit:
                        who = "the daily budget" if scope == ALL_KEYS else "this API key's daily budget"
                        raise ApiError(
                            ErrorKind.BUDGET_EXCEEDED,
                            f"{who} is exhausted: {max(limit - spent - reserved, 0)} of {limit} nanoTON"
                            f" left today, this request may cost up to {amount}",
                        )
                for scope in scopes:
                    self._db.execute(
                        "INSERT INTO spend (day, scope, reserved) VALUES (?, ?, ?) ON CONFLICT (day, scope)"
                        " DO UPDATE SET reserved = reserved + excluded.reserved",
                        (day, scope, amount),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Reservation(day, scopes, amount)

    def settle(self, reservation: Reservation, cost: int) -> None:
        """The answer ended: the reservation becomes ``cost`` (0 = released: nothing was billed)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for scope in reservation.scopes:
                self._db.execute(
                    "UPDATE spend SET reserved = MAX(reserved - ?, 0), spent = spent + ? WHERE day=? AND scope=?",
                    (reservation.amount, max(cost, 0), reservation.day, scope),
                )
            self._db.execute("COMMIT")
