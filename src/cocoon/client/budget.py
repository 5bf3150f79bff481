"""The client's hard daily spending limits, kept on disk (``<home>/budget.sqlite``).

Each request reserves its most possible cost *before* it is sent — the same bound the proxy holds
its bill to (``adjust(max_tokens + body_bytes, max_coefficient) × price_per_token``) — so the limit
is never overshot, not even by the request that crosses it. When the answer ends, the reservation
becomes the real cost. Limits apply per UTC day over all keys (``"*"``) and per API key.

Writes are durable (SQLite, WAL, ``synchronous=FULL``) and run on one writer thread, never on the
event loop: a reservation is awaited (it must be on disk before the request leaves), a settlement
is queued (it only ever lowers what is held, so doing it late can never overshoot). A reservation
still open when the process dies counts as spent when the store is opened again: we cannot know
what the proxy billed for it, and a hard limit errs on the safe side. Reads come from an in-memory
copy kept in step with the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cocoon.oai import ApiError, ErrorKind

__all__ = ["ALL_KEYS", "BudgetStore", "Reservation", "key_scope", "reservation_nano"]

log = logging.getLogger(__name__)

ALL_KEYS = "*"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    day TEXT NOT NULL, scope TEXT NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope)
)
"""
_UPSERT = (
    "INSERT INTO spend (day, scope, spent, reserved) VALUES (?, ?, ?, ?) ON CONFLICT (day, scope)"
    " DO UPDATE SET spent = excluded.spent, reserved = excluded.reserved"
)


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
    """Durable reservations against per-day limits (see the module docstring)."""

    def __init__(self, path: Path, limits: Mapping[str, int], *, today: Callable[[], str] = _utc_day) -> None:
        self._limits = {scope: limit for scope, limit in limits.items() if limit > 0}
        self._today = today
        self._lock = threading.Lock()  # guards _rows (read on the loop, written on the writer thread)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="client-budget")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        # Reservations of a process that died: their cost is unknown, count them as spent.
        self._db.execute("UPDATE spend SET spent = spent + reserved, reserved = 0 WHERE reserved > 0")
        self._rows: dict[tuple[str, str], tuple[int, int]] = {
            (day, scope): (int(spent), 0)
            for day, scope, spent in self._db.execute("SELECT day, scope, spent FROM spend")
        }

    def close(self) -> None:
        """Finish the queued writes, then close the file."""
        self._writer.shutdown(wait=True)
        self._db.close()

    def limit(self, scope: str) -> int | None:
        return self._limits.get(scope)

    def _row(self, day: str, scope: str) -> tuple[int, int]:
        with self._lock:
            return self._rows.get((day, scope), (0, 0))

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

    async def reserve(self, amount: int, key_scope: str | None = None) -> Reservation:
        """Hold ``amount`` against the day's limits (on disk when this returns), or raise
        ``budget_exceeded`` and hold nothing."""
        if amount < 0:
            raise ValueError("a reservation cannot be negative")
        scopes = (ALL_KEYS,) if key_scope is None else (ALL_KEYS, key_scope)
        held = Reservation(self._today(), scopes, amount)
        writing = asyncio.get_running_loop().run_in_executor(self._writer, self._reserve, held)
        try:
            return await asyncio.shield(writing)
        except asyncio.CancelledError:
            # The caller left while the hold was being written: give it back once it is, or it
            # would be held until a restart counts it as spent.
            writing.add_done_callback(lambda done: self._release_unclaimed(done, held))
            raise

    def _release_unclaimed(self, writing: asyncio.Future[Reservation], held: Reservation) -> None:
        if not writing.cancelled() and writing.exception() is None:
            with contextlib.suppress(RuntimeError):  # the store closed first: a restart counts it spent
                self.settle_soon(held, 0)

    def settle_soon(self, reservation: Reservation, cost: int) -> None:
        """The answer ended: the reservation becomes ``cost`` (0 = released). Queued, not awaited."""
        self._writer.submit(self._settle, reservation, max(cost, 0)).add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait until every queued settlement is on disk (and in :meth:`left`)."""
        await asyncio.get_running_loop().run_in_executor(self._writer, lambda: None)

    # -- on the writer thread ----------------------------------------------------------------------

    def _reserve(self, held: Reservation) -> Reservation:
        with self._lock:
            for scope in held.scopes:
                limit = self._limits.get(scope)
                spent, reserved = self._rows.get((held.day, scope), (0, 0))
                if limit is not None and spent + reserved + held.amount > limit:
                    who = "the daily budget" if scope == ALL_KEYS else "this API key's daily budget"
                    raise ApiError(
                        ErrorKind.BUDGET_EXCEEDED,
                        f"{who} is exhausted: {max(limit - spent - reserved, 0)} of {limit} nanoTON"
                        f" left today, this request may cost up to {held.amount}",
                    )
        self._apply(held, spent_delta=0, reserved_delta=held.amount)
        return held

    def _settle(self, held: Reservation, cost: int) -> None:
        self._apply(held, spent_delta=cost, reserved_delta=-held.amount)

    def _apply(self, held: Reservation, *, spent_delta: int, reserved_delta: int) -> None:
        """Change the rows of ``held`` in memory and on disk, together (the disk first)."""
        with self._lock:
            rows = {}
            for scope in held.scopes:
                spent, reserved = self._rows.get((held.day, scope), (0, 0))
                rows[scope] = (spent + spent_delta, max(reserved + reserved_delta, 0))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for scope, (spent, reserved) in rows.items():
                self._db.execute(_UPSERT, (held.day, scope, spent, reserved))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        with self._lock:
            self._rows.update({(held.day, scope): row for scope, row in rows.items()})


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("could not record a settled request in the budget store: %s", exc)
