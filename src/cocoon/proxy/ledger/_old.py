"""The proxy's durable billing store: per-client and per-worker cumulative counters, requests, state anchoring.

One SQLite file in WAL mode with ``synchronous=FULL``: a call that returns has reached the disk, so the proxy
settles a request *before* it releases the answer (write-ahead, then act). One writer: the store takes an
exclusive lock file next to the database and refuses a second opener (:class:`StoreBusy`).

Every public operation is one transaction and validates its input first; bad input raises a
:class:`LedgerError` subclass and changes nothing. Amounts are nanoTON, token counts are *adjusted* tokens
(see :mod:`cocoon.proxy.pricing`). Time is always passed in (``now``, seconds since the epoch).

Requests move ``reserved → settled`` or ``reserved → failed``; both ends are final. :meth:`BillingLedger.settle`
and :meth:`BillingLedger.fail` are idempotent per request id: repeating one with the same data returns the
stored record and charges nothing again; repeating it with different data raises :class:`RequestConflict`.
:meth:`BillingLedger.release` is the ``finally`` companion: it fails a still-reserved request charging nothing
and leaves a finished one alone. :meth:`BillingLedger.settle_many` settles a batch in one disk sync (group
commit); a single durable commit costs one fsync (~5 ms on a virtual disk), so a busy proxy should batch.
Reservations and account registration commit without a disk sync (losing them in a power cut only releases
funds, as a restart does anyway); everything that moves money or state seqnos syncs.

Funds (the reference's rule, ``ProxyClientInfo.h``, converted from tokens to nanoTON)::

    available = min(balance, stake) + charged_tokens × price_per_token − cost − reserved

``balance``/``stake``/``charged_tokens`` are what the client contract on chain holds (charged_tokens = adjusted
tokens already charged on chain by our signed IOUs); ``cost`` is everything we billed, ``reserved`` what
running requests hold. So a client may run up to one stake (and never more than its balance) of usage beyond
what is already charged on chain; the stake is the proxy's security for unpaid usage.

State anchoring (reference §4.8): :meth:`bump_seqno` increments ``seqno`` and snapshots every account whose
counter moved; the proxy posts ``(seqno, session_hash)`` on chain; when it sees it there it calls
:meth:`mark_committed`, which makes the snapshotted counters the ``committed_tokens`` for which IOUs may be
signed. Rollback defence: if the chain knows a commit newer than our ``seqno``, or charges/payouts larger than
our counters, the store was restored from an old copy and :class:`StoreRolledBack` is raised.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from cocoon.proxy.errors import (
    InsufficientFunds,
    LedgerError,
    LedgerInputError,
    RequestConflict,
    StoreBusy,
    StoreRolledBack,
    UnknownAccount,
    UnknownRequest,
)
from cocoon.proxy.pricing import MAX_NANO, Charge, TokenCounts

__all__ = [
    "BillingLedger",
    "ClientTotals",
    "LedgerStatistics",
    "RequestRecord",
    "RequestState",
    "Settlement",
    "WorkerTotals",
]

SCHEMA_VERSION = 1
MAX_ID_LEN = 256
SESSION_HASH_LEN = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client          TEXT PRIMARY KEY,
    contract        TEXT NOT NULL,
    price_per_token INTEGER NOT NULL,
    balance         INTEGER NOT NULL DEFAULT 0,
    stake           INTEGER NOT NULL DEFAULT 0,
    charged_tokens  INTEGER NOT NULL DEFAULT 0,
    tokens          INTEGER NOT NULL DEFAULT 0,
    cost            INTEGER NOT NULL DEFAULT 0,
    reserved        INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    snap_tokens     INTEGER NOT NULL DEFAULT 0,
    requests        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS workers (
    worker          TEXT PRIMARY KEY,
    contract        TEXT NOT NULL,
    tokens          INTEGER NOT NULL DEFAULT 0,
    earnings        INTEGER NOT NULL DEFAULT 0,
    paid_tokens     INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    snap_tokens     INTEGER NOT NULL DEFAULT 0,
    requests        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS requests (
    request_id      TEXT PRIMARY KEY,
    client          TEXT NOT NULL REFERENCES clients(client),
    worker          TEXT,
    model           TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'failed')),
    reserved        INTEGER NOT NULL,
    prompt_tokens   INTEGER,
    cached_tokens   INTEGER,
    completion_tokens INTEGER,
    reasoning_tokens INTEGER,
    prompt_adjusted INTEGER NOT NULL DEFAULT 0,
    cached_adjusted INTEGER NOT NULL DEFAULT 0,
    completion_adjusted INTEGER NOT NULL DEFAULT 0,
    reasoning_adjusted INTEGER NOT NULL DEFAULT 0,
    total_adjusted  INTEGER NOT NULL DEFAULT 0,
    cost            INTEGER NOT NULL DEFAULT 0,
    worker_earning  INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    finished_at     REAL
) STRICT;
CREATE INDEX IF NOT EXISTS requests_by_state ON requests(state);
CREATE TABLE IF NOT EXISTS snapshots (
    seqno           INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('client', 'worker')),
    account         TEXT NOT NULL,
    tokens          INTEGER NOT NULL,
    PRIMARY KEY (seqno, kind, account)
) STRICT;
CREATE TABLE IF NOT EXISTS state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    seqno           INTEGER NOT NULL,
    session_hash    BLOB NOT NULL,
    last_committed_seqno INTEGER NOT NULL,
    committed_session_hash BLOB NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
"""


class RequestState(StrEnum):
    RESERVED = "reserved"  # funds held, work may be running
    SETTLED = "settled"  # final: charged in full
    FAILED = "failed"  # final: charged only what was delivered (possibly nothing)


@dataclass(frozen=True, slots=True)
class ClientTotals:
    client: str
    contract: str
    price_per_token: int
    balance_nano: int  # on the client contract, as last read from chain
    stake_nano: int
    charged_tokens: int  # adjusted tokens already charged on chain
    tokens: int  # cumulative adjusted tokens we billed
    cost_nano: int  # cumulative nanoTON we billed
    reserved_nano: int  # held by running requests
    committed_tokens: int  # part of ``tokens`` anchored on chain: the most an IOU may say
    requests: int
    available_nano: int


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    worker: str
    contract: str
    tokens: int  # cumulative adjusted tokens served
    earnings_nano: int  # cumulative nanoTON earned
    paid_tokens: int  # adjusted tokens already paid out on chain
    committed_tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    client: str
    worker: str | None
    model: str
    state: RequestState
    reserved_nano: int
    usage: TokenCounts | None  # raw counts as reported (after the metering audit), when given
    charge: Charge
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class LedgerStatistics:
    clients: int
    workers: int
    requests_reserved: int
    requests_settled: int
    requests_failed: int
    revenue_nano: int  # Σ client cost
    worker_earnings_nano: int  # Σ worker earnings
    proxy_fees_nano: int  # revenue − worker earnings
    reserved_nano: int
    client_balance_nano: int  # Σ on-chain client balances
    client_stake_nano: int
    client_available_nano: int
    adjusted_tokens: int
    seqno: int
    last_committed_seqno: int
    session_hash: str  # hex


@dataclass(frozen=True, slots=True)
class Settlement:
    """One item of :meth:`BillingLedger.settle_many`: ``ok`` settles in full, otherwise fails charging ``charge``."""

    request_id: str
    worker: str | None
    charge: Charge
    ok: bool = True
    usage: TokenCounts | None = None


# ---------------------------------------------------------------- validation


def _int(name: str, value: object, upper: int = MAX_NANO) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LedgerInputError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value > upper:
        raise LedgerInputError(f"{name} must be in [0, {upper}]")
    return value


def _ident(name: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise LedgerInputError(f"{name} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise LedgerInputError(f"{name} must not be empty")
    if len(value) > MAX_ID_LEN:
        raise LedgerInputError(f"{name} is longer than {MAX_ID_LEN} characters")
    if not value.isprintable():
        raise LedgerInputError(f"{name} contains control characters")
    return value


def _time(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise LedgerInputError(f"now must be a number, got {type(value).__name__}")
    t = float(value)
    if not math.isfinite(t) or t < 0:
        raise LedgerInputError("now must be a finite, non-negative number of seconds")
    return t


def _charge(value: object) -> Charge:
    if not isinstance(value, Charge):
        raise LedgerInputError(f"charge must be a Charge, got {type(value).__name__}")
    # Charge validates itself, but a caller can bypass a frozen dataclass with object.__setattr__.
    try:
        Charge(*(getattr(value, f.name) for f in fields(Charge)))
    except ValueError as exc:
        raise LedgerInputError(f"invalid charge: {exc}") from exc
    return value


def _usage(value: object) -> TokenCounts | None:
    if value is None:
        return None
    if not isinstance(value, TokenCounts):
        raise LedgerInputError(f"usage must be TokenCounts or None, got {type(value).__name__}")
    try:
        TokenCounts(*(getattr(value, f.name) for f in fields(TokenCounts)))
    except ValueError as exc:
        raise LedgerInputError(f"invalid usage: {exc}") from exc
    return value


def _add(name: str, a: int, b: int) -> int:
    # Sums are computed here, not in SQL: SQLite silently turns an overflowing integer sum into a REAL.
    total = a + b
    if total > MAX_NANO:
        raise LedgerInputError(f"{name} would overflow int64")
    return total


# ---------------------------------------------------------------- the store


class BillingLedger:
    """SQLite billing store (WAL, synchronous=FULL, one writer). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._lock_fd = os.open(f"{self._path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise StoreBusy(f"billing store {self._path.name} is held by another process") from exc
        try:
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"billing store could not switch to WAL (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._sync_full = True
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except BaseException:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _init_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise LedgerError(f"billing store schema version {version} is not supported")
        # executescript commits any open transaction first, so the whole script carries its own BEGIN/COMMIT.
        script = (
            "BEGIN IMMEDIATE;"
            + _SCHEMA
            + "INSERT OR IGNORE INTO state VALUES (1, 0, zeroblob(32), 0, zeroblob(32), 0.0);"
            + f"PRAGMA user_version={SCHEMA_VERSION};"
            + "COMMIT;"
        )
        try:
            self._conn.executescript(script)
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ lifecycle

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close the database and release the writer lock; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)

    def __enter__(self) -> BillingLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls it back, SQLite errors become LedgerError.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``): used only for writes
        whose loss in a power cut is harmless — reservations (a restart releases them anyway) and account
        registration. Process crashes lose nothing even then (the WAL is in the OS cache), and the next
        durable commit syncs the whole WAL, so a settled request never lacks its reservation row.
        """
        with self._lock:
            if self._closed:
                raise LedgerError("billing store is closed")
            conn = self._conn
            try:
                if durable is not self._sync_full:
                    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._sync_full = durable
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LedgerError(f"billing store unavailable: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise LedgerError(f"billing store error: {exc}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise LedgerError("billing store is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise LedgerError(f"billing store error: {exc}") from exc

    # ------------------------------------------------------------ accounts

    def upsert_client(self, client: str, *, contract: str, price_per_token: int, now: float) -> ClientTotals:
        """Register a client (owner address) with its contract address and the contract's price per token.

        Changing the contract of a known client is refused: a new contract is a new account (reference §4.9).
        """
        client = _ident("client", client)
        contract = _ident("contract", contract, allow_empty=True)
        price_per_token = _int("price_per_token", price_per_token, 2**40)
        t = _time(now)
        with self._tx(durable=False) as db:
            row = db.execute(
                "SELECT contract, price_per_token FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                _insert_client(db, client, contract, price_per_token, t)
            else:
                if row[0] and contract and row[0] != contract:
                    raise RequestConflict(f"client {client} is bound to another contract")
                if row[1] and row[1] != price_per_token:
                    # Prices are fixed per contract; a price change means a new contract.
                    raise RequestConflict(f"client {client}'s contract has another price per token")
                db.execute(
                    "UPDATE clients SET contract=?, price_per_token=?, updated_at=? WHERE client=?",
                    (contract or row[0], price_per_token, t, client),
                )
            return self._client_totals(db, client)

    def ensure_client(
        self, client: str, *, now: float, credit: int = 0, contract: str = "", price_per_token: int = 0
    ) -> ClientTotals:
        """Register ``client`` if it is new; on local/test networks give an unfunded client ``credit`` nanoTON.

        ``credit`` becomes both balance and stake, and only for a client that has no chain state yet (balance,
        stake and charges all 0), so calling this on every connection is harmless. ``price_per_token`` 0 means
        "not known yet": on-chain charges then free no funds (conservative) until :meth:`upsert_client` sets it.
        """
        client = _ident("client", client)
        credit = _int("credit", credit)
        contract = _ident("contract", contract, allow_empty=True)
        price_per_token = _int("price_per_token", price_per_token, 2**40)
        t = _time(now)
        with self._tx(durable=False) as db:
            row = db.execute(
                "SELECT balance, stake, charged_tokens FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                _insert_client(db, client, contract, price_per_token, t)
                row = (0, 0, 0)
            if credit and row == (0, 0, 0):
                db.execute(
                    "UPDATE clients SET balance=?, stake=?, updated_at=? WHERE client=?",
                    (credit, credit, t, client),
                )
            return self._client_totals(db, client)

    def set_client_chain_state(
        self, client: str, *, balance: int, stake: int, charged_tokens: int, now: float
    ) -> ClientTotals:
        """Record the client contract's on-chain balance, stake and tokens already charged (nanoTON / tokens).

        Raises :class:`StoreRolledBack` when the chain has charged more tokens than this store ever billed.
        """
        client = _ident("client", client)
        balance = _int("balance", balance)
        stake = _int("stake", stake)
        charged_tokens = _int("charged_tokens", charged_tokens)
        t = _time(now)
        with self._tx() as db:
            row = db.execute(
                "SELECT tokens, charged_tokens FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                raise UnknownAccount(f"unknown client {client}")
            if charged_tokens > row[0]:
                raise StoreRolledBack(
                    f"chain charged client {client} {charged_tokens} tokens, the store billed only {row[0]}"
                )
            # On-chain charges only grow; an older chain view must not lower what we know.
            charged_tokens = max(charged_tokens, row[1])
            db.execute(
                "UPDATE clients SET balance=?, stake=?, charged_tokens=?, updated_at=? WHERE client=?",
                (balance, stake, charged_tokens, t, client),
            )
            return self._client_totals(db, client)

    def upsert_worker(self, worker: str, *, contract: str, now: float) -> WorkerTotals:
        """Register a worker (owner address) and its worker contract (may be empty until known)."""
        worker = _ident("worker", worker)
        contract = _ident("contract", contract, allow_empty=True)
        t = _time(now)
        with self._tx(durable=False) as db:
            row = db.execute("SELECT contract FROM workers WHERE worker=?", (worker,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO workers (worker, contract, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (worker, contract, t, t),
                )
            else:
                if row[0] and contract and row[0] != contract:
                    raise RequestConflict(f"worker {worker} is bound to another contract")
                db.execute(
                    "UPDATE workers SET contract=?, updated_at=? WHERE worker=?",
                    (contract or row[0], t, worker),
                )
            return self._worker_totals(db, worker)

    def set_worker_chain_state(self, worker: str, *, paid_tokens: int, now: float) -> WorkerTotals:
        """Record the tokens the worker contract has already paid out on chain.

        Raises :class:`StoreRolledBack` when the chain paid out more than this store says the worker earned.
        """
        worker = _ident("worker", worker)
        paid_tokens = _int("paid_tokens", paid_tokens)
        t = _time(now)
        with self._tx() as db:
            row = db.execute("SELECT tokens, paid_tokens FROM workers WHERE worker=?", (worker,)).fetchone()
            if row is None:
                raise UnknownAccount(f"unknown worker {worker}")
            if paid_tokens > row[0]:
                raise StoreRolledBack(
                    f"chain paid worker {worker} {paid_tokens} tokens, the store recorded only {row[0]}"
                )
            db.execute(
                "UPDATE workers SET paid_tokens=?, updated_at=? WHERE worker=?",
                (max(paid_tokens, row[1]), t, worker),
            )
            return self._worker_totals(db, worker)

    # ------------------------------------------------------------ funds

    def available(self, client: str) -> int:
        """nanoTON the client may still reserve: ``min(balance, stake) + charged×price − cost − reserved`` (≥ 0)."""
        client = _ident("client", client)
        with self._read() as db:
            return self._client_totals(db, client).available_nano

    def reserve(
        self, request_id: str, client: str, amount: int, now: float, *, model: str = ""
    ) -> RequestRecord:
        """Hold ``amount`` nanoTON of the client's funds for a new request, or raise :class:`InsufficientFunds`.

        Repeating the same reservation (same id, client, amount) returns the stored record.
        """
        request_id = _ident("request_id", request_id)
        client = _ident("client", client)
        amount = _int("amount", amount)
        model = _ident("model", model, allow_empty=True)
        t = _time(now)
        with self._tx(durable=False) as db:
            existing = self._request(db, request_id)
            if existing is not None:
                if (
                    existing.state is RequestState.RESERVED
                    and existing.client == client
                    and existing.reserved_nano == amount
                ):
                    return existing
                raise RequestConflict(f"request {request_id} already exists")
            row = db.execute("SELECT reserved, requests FROM clients WHERE client=?", (client,)).fetchone()
            if row is None:
                raise InsufficientFunds(client, required=amount, available=0)
            available = self._client_totals(db, client).available_nano
            if amount > available:
                raise InsufficientFunds(client, required=amount, available=available)
            db.execute(
                "UPDATE clients SET reserved=?, requests=?, updated_at=? WHERE client=?",
                (_add("reserved", row[0], amount), row[1] + 1, t, client),
            )
            db.execute(
                "INSERT INTO requests (request_id, client, model, state, reserved, created_at)"
                " VALUES (?, ?, ?, 'reserved', ?, ?)",
                (request_id, client, model, amount, t),
            )
            record = self._request(db, request_id)
            assert record is not None
            return record

    def settle(
        self, request_id: str, worker: str, charge: Charge, now: float, *, usage: TokenCounts | None = None
    ) -> RequestRecord:
        """Charge a finished request in full and credit its worker; idempotent per request id.

        The charge may exceed the reservation (the reference charges actual usage too); the client's stake covers
        it. An unknown worker is registered on the fly, so that money earned is never refused.
        """
        request_id = _ident("request_id", request_id)
        worker = _ident("worker", worker)
        charge = _charge(charge)
        usage = _usage(usage)
        t = _time(now)
        with self._tx() as db:
            return self._finish(db, request_id, worker, charge, usage, t, RequestState.SETTLED)

    def settle_many(self, items: Sequence[Settlement], now: float) -> list[RequestRecord | LedgerError]:
        """Settle or fail many requests in one durable commit (group commit: one disk sync for all).

        Each item succeeds or fails on its own (a savepoint each): the result list holds, in order, the
        record or the :class:`LedgerError` that item raised. Same rules and idempotency as :meth:`settle` /
        :meth:`fail`. Meant for a service that queues settlements from concurrent requests and writes them
        in batches from one thread, releasing each answer when its batch has returned.
        """
        t = _time(now)
        if not isinstance(items, Sequence):
            raise LedgerInputError("items must be a sequence of Settlement")
        results: list[RequestRecord | LedgerError] = []
        with self._tx() as db:
            for item in items:
                try:
                    if not isinstance(item, Settlement):
                        raise LedgerInputError(f"expected a Settlement, got {type(item).__name__}")
                    request_id = _ident("request_id", item.request_id)
                    charge = _charge(item.charge)
                    worker = None if item.worker is None else _ident("worker", item.worker)
                    if item.ok and worker is None:
                        raise LedgerInputError("a settled request needs its worker")
                    if worker is None and (charge.total_adjusted or charge.client_cost_nano):
                        raise LedgerInputError("a delivered charge needs the worker that delivered it")
                    usage = _usage(item.usage)
                    final = RequestState.SETTLED if item.ok else RequestState.FAILED
                    db.execute("SAVEPOINT item")
                    try:
                        results.append(self._finish(db, request_id, worker, charge, usage, t, final))
                    except BaseException:
                        db.execute("ROLLBACK TO item")
                        raise
                    finally:
                        db.execute("RELEASE item")
                except LedgerError as exc:
                    results.append(exc)
        return results

    def fail(
        self,
        request_id: str,
        delivered: Charge | None,
        *,
        worker: str | None = None,
        now: float,
        usage: TokenCounts | None = None,
    ) -> RequestRecord:
        """End a request that did not complete: release its reservation, charge only ``delivered`` (or nothing).

        ``worker`` is required when ``delivered`` charges anything. Idempotent per request id.
        """
        request_id = _ident("request_id", request_id)
        charge = Charge.zero() if delivered is None else _charge(delivered)
        if worker is not None:
            worker = _ident("worker", worker)
        elif charge.total_adjusted or charge.client_cost_nano:
            raise LedgerInputError("a delivered charge needs the worker that delivered it")
        usage = _usage(usage)
        t = _time(now)
        with self._tx() as db:
            return self._finish(db, request_id, worker, charge, usage, t, RequestState.FAILED)

    def release(self, request_id: str, *, now: float) -> RequestRecord:
        """Free whatever ``request_id`` still holds: a reserved request fails charging nothing; a settled or
        failed one is returned unchanged. Meant for a ``finally`` after :meth:`settle` / :meth:`fail` may have run.
        """
        request_id = _ident("request_id", request_id)
        t = _time(now)
        with self._tx(durable=False) as db:
            record = self._request(db, request_id)
            if record is None:
                raise UnknownRequest(f"unknown request {request_id}")
            if record.state is not RequestState.RESERVED:
                return record
            return self._finish(db, request_id, None, Charge.zero(), None, t, RequestState.FAILED)

    def release_stale(self, *, now: float, older_than: float) -> list[str]:
        """Fail (charging nothing) every request still reserved that was created before ``older_than``.

        For restart after a crash: a request that was never settled never had its answer released in full.
        """
        t = _time(now)
        cutoff = _time(older_than)
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT request_id FROM requests WHERE state='reserved' AND created_at < ? ORDER BY request_id",
                    (cutoff,),
                )
            ]
            for rid in ids:
                self._finish(db, rid, None, Charge.zero(), None, t, RequestState.FAILED)
            return ids

    def _finish(
        self,
        db: sqlite3.Connection,
        request_id: str,
        worker: str | None,
        charge: Charge,
        usage: TokenCounts | None,
        now: float,
        final: RequestState,
    ) -> RequestRecord:
        record = self._request(db, request_id)
        if record is None:
            raise UnknownRequest(f"unknown request {request_id}")
        if record.state is not RequestState.RESERVED:
            same = record.state is final and record.charge == charge and record.worker == worker
            if same:
                return record  # a replay: already written, charge nothing again
            raise RequestConflict(f"request {request_id} is already {record.state.value}")
        crow = db.execute(
            "SELECT tokens, cost, reserved FROM clients WHERE client=?", (record.client,)
        ).fetchone()
        tokens = _add("client tokens", crow[0], charge.total_adjusted)
        cost = _add("client cost", crow[1], charge.client_cost_nano)
        reserved = max(crow[2] - record.reserved_nano, 0)
        db.execute(
            "UPDATE clients SET tokens=?, cost=?, reserved=?, updated_at=? WHERE client=?",
            (tokens, cost, reserved, now, record.client),
        )
        if worker is not None:
            wrow = db.execute(
                "SELECT tokens, earnings, requests FROM workers WHERE worker=?", (worker,)
            ).fetchone()
            if wrow is None:
                db.execute(
                    "INSERT INTO workers (worker, contract, created_at, updated_at) VALUES (?, '', ?, ?)",
                    (worker, now, now),
                )
                wrow = (0, 0, 0)
            db.execute(
                "UPDATE workers SET tokens=?, earnings=?, requests=?, updated_at=? WHERE worker=?",
                (
                    _add("worker tokens", wrow[0], charge.total_adjusted),
                    _add("worker earnings", wrow[1], charge.worker_earning_nano),
                    wrow[2] + 1,
                    now,
                    worker,
                ),
            )
        u = usage
        db.execute(
            "UPDATE requests SET worker=?, state=?, prompt_tokens=?, cached_tokens=?, completion_tokens=?,"
            " reasoning_tokens=?, prompt_adjusted=?, cached_adjusted=?, completion_adjusted=?,"
            " reasoning_adjusted=?, total_adjusted=?, cost=?, worker_earning=?, finished_at=? WHERE request_id=?",
            (
                worker,
                final.value,
                None if u is None else u.prompt,
                None if u is None else u.cached,
                None if u is None else u.completion,
                None if u is None else u.reasoning,
                charge.prompt_adjusted,
                charge.cached_adjusted,
                charge.completion_adjusted,
                charge.reasoning_adjusted,
                charge.total_adjusted,
                charge.client_cost_nano,
                charge.worker_earning_nano,
                now,
                request_id,
            ),
        )
        done = self._request(db, request_id)
        assert done is not None
        return done

    # ------------------------------------------------------------ reads

    def client_totals(self, client: str) -> ClientTotals:
        client = _ident("client", client)
        with self._read() as db:
            return self._client_totals(db, client)

    def worker_totals(self, worker: str) -> WorkerTotals:
        worker = _ident("worker", worker)
        with self._read() as db:
            return self._worker_totals(db, worker)

    def clients(self) -> list[ClientTotals]:
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT client FROM clients ORDER BY client")]
            return [self._client_totals(db, n) for n in names]

    def workers(self) -> list[WorkerTotals]:
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT worker FROM workers ORDER BY worker")]
            return [self._worker_totals(db, n) for n in names]

    def request(self, request_id: str) -> RequestRecord | None:
        request_id = _ident("request_id", request_id)
        with self._read() as db:
            return self._request(db, request_id)

    def reserved_requests(self) -> list[RequestRecord]:
        with self._read() as db:
            ids = [r[0] for r in db.execute("SELECT request_id FROM requests WHERE state='reserved'")]
            return [r for r in (self._request(db, i) for i in ids) if r is not None]

    @staticmethod
    def _client_totals(db: sqlite3.Connection, client: str) -> ClientTotals:
        row = db.execute(
            "SELECT client, contract, price_per_token, balance, stake, charged_tokens, tokens, cost, reserved,"
            " committed_tokens, requests FROM clients WHERE client=?",
            (client,),
        ).fetchone()
        if row is None:
            raise UnknownAccount(f"unknown client {client}")
        (name, contract, ppt, balance, stake, charged, tokens, cost, reserved, committed, requests) = row
        available = min(balance, stake) + charged * ppt - cost - reserved
        return ClientTotals(
            client=name,
            contract=contract,
            price_per_token=ppt,
            balance_nano=balance,
            stake_nano=stake,
            charged_tokens=charged,
            tokens=tokens,
            cost_nano=cost,
            reserved_nano=reserved,
            committed_tokens=committed,
            requests=requests,
            available_nano=max(available, 0),
        )

    @staticmethod
    def _worker_totals(db: sqlite3.Connection, worker: str) -> WorkerTotals:
        row = db.execute(
            "SELECT worker, contract, tokens, earnings, paid_tokens, committed_tokens, requests"
            " FROM workers WHERE worker=?",
            (worker,),
        ).fetchone()
        if row is None:
            raise UnknownAccount(f"unknown worker {worker}")
        return WorkerTotals(*row)

    @staticmethod
    def _request(db: sqlite3.Connection, request_id: str) -> RequestRecord | None:
        row = db.execute(
            "SELECT request_id, client, worker, model, state, reserved, prompt_tokens, cached_tokens,"
            " completion_tokens, reasoning_tokens, prompt_adjusted, cached_adjusted, completion_adjusted,"
            " reasoning_adjusted, total_adjusted, cost, worker_earning, created_at, finished_at"
            " FROM requests WHERE request_id=?",
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        usage = None if row[6] is None else TokenCounts(row[6], row[7], row[8], row[9])
        charge = Charge(row[10], row[11], row[12], row[13], row[14], row[15], row[16], row[15] - row[16])
        return RequestRecord(
            request_id=row[0],
            client=row[1],
            worker=row[2],
            model=row[3],
            state=RequestState(row[4]),
            reserved_nano=row[5],
            usage=usage,
            charge=charge,
            created_at=row[17],
            finished_at=row[18],
        )

    # ------------------------------------------------------------ state anchoring

    def start_session(self, session_hash: bytes, now: float) -> int:
        """Begin a process session (random 32-byte hash posted with commits); bumps and returns the seqno."""
        if not isinstance(session_hash, bytes) or len(session_hash) != SESSION_HASH_LEN:
            raise LedgerInputError("session_hash must be 32 bytes")
        t = _time(now)
        with self._tx() as db:
            db.execute("UPDATE state SET session_hash=? WHERE id=1", (session_hash,))
            return self._bump(db, t)

    def bump_seqno(self, now: float) -> int:
        """Increment the state seqno and snapshot every account whose counter moved; returns the new seqno."""
        t = _time(now)
        with self._tx() as db:
            return self._bump(db, t)

    @staticmethod
    def _bump(db: sqlite3.Connection, now: float) -> int:
        seqno = int(db.execute("SELECT seqno FROM state WHERE id=1").fetchone()[0]) + 1
        for kind, table, key in (("client", "clients", "client"), ("worker", "workers", "worker")):
            db.execute(
                f"INSERT INTO snapshots (seqno, kind, account, tokens)"
                f" SELECT ?, ?, {key}, tokens FROM {table} WHERE tokens != snap_tokens",
                (seqno, kind),
            )
            db.execute(f"UPDATE {table} SET snap_tokens=tokens WHERE tokens != snap_tokens")
        db.execute("UPDATE state SET seqno=?, updated_at=? WHERE id=1", (seqno, now))
        return seqno

    def mark_committed(self, seqno: int, session_hash: bytes) -> bool:
        """The chain shows our commit of ``seqno``: counters snapshotted at ≤ seqno become committed.

        Returns False when ``seqno`` is not newer than the last commit (a replay; nothing changes).
        Raises :class:`StoreRolledBack` when ``seqno`` is beyond anything this store has produced.
        """
        seqno = _int("seqno", seqno, 2**32 - 1)
        if not isinstance(session_hash, bytes) or len(session_hash) != SESSION_HASH_LEN:
            raise LedgerInputError("session_hash must be 32 bytes")
        with self._tx() as db:
            current, last = db.execute("SELECT seqno, last_committed_seqno FROM state WHERE id=1").fetchone()
            if seqno > current:
                raise StoreRolledBack(f"chain has commit {seqno}, the store only reached {current}")
            if seqno <= last:
                return False
            for kind, table, key in (("client", "clients", "client"), ("worker", "workers", "worker")):
                db.execute(
                    f"UPDATE {table} SET committed_tokens = (SELECT MAX(s.tokens) FROM snapshots s"
                    f" WHERE s.kind=? AND s.account={table}.{key} AND s.seqno<=?)"
                    f" WHERE EXISTS (SELECT 1 FROM snapshots s WHERE s.kind=? AND s.account={table}.{key}"
                    f" AND s.seqno<=?)",
                    (kind, seqno, kind, seqno),
                )
            db.execute("DELETE FROM snapshots WHERE seqno<=?", (seqno,))
            db.execute(
                "UPDATE state SET last_committed_seqno=?, committed_session_hash=? WHERE id=1",
                (seqno, session_hash),
            )
            return True

    def check_not_rolled_back(self, chain_committed_seqno: int) -> None:
        """Refuse to serve from a store older than the last commit on chain (raises :class:`StoreRolledBack`)."""
        chain_committed_seqno = _int("chain_committed_seqno", chain_committed_seqno, 2**32 - 1)
        with self._read() as db:
            current = int(db.execute("SELECT seqno FROM state WHERE id=1").fetchone()[0])
        if chain_committed_seqno > current:
            raise StoreRolledBack(
                f"store seqno {current} is older than the last commit on chain ({chain_committed_seqno})"
            )

    def check_worker_report(self, worker: str, reported_tokens: int) -> None:
        """Compare a worker's own record of its earnings (adjusted tokens) with ours (reference §2.7.4).

        Pass only numbers the worker backs with our signature (the last signed payment it holds, verified by
        the caller): then a higher number than ours proves this store lost writes, and
        :class:`StoreRolledBack` is raised. A lower number is fine (the worker missed a payment message).
        """
        self._check_report("worker", worker, reported_tokens)

    def check_client_report(self, client: str, reported_tokens: int) -> None:
        """Same as :meth:`check_worker_report` for a client's record of what it was charged."""
        self._check_report("client", client, reported_tokens)

    def _check_report(self, kind: str, account: str, reported_tokens: int) -> None:
        account = _ident(kind, account)
        reported_tokens = _int("reported_tokens", reported_tokens)
        table = "workers" if kind == "worker" else "clients"
        with self._read() as db:
            row = db.execute(f"SELECT tokens FROM {table} WHERE {kind}=?", (account,)).fetchone()
        ours = 0 if row is None else int(row[0])
        if reported_tokens > ours:
            raise StoreRolledBack(
                f"{kind} {account} holds a signed record of {reported_tokens} tokens, store has {ours}"
            )

    @property
    def seqno(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT seqno FROM state WHERE id=1").fetchone()[0])

    # ------------------------------------------------------------ statistics

    def statistics(self) -> LedgerStatistics:
        """An immutable snapshot of the totals for the operator view."""
        with self._read() as db:
            counts = dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
            crow = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(cost),0), COALESCE(SUM(reserved),0), COALESCE(SUM(balance),0),"
                " COALESCE(SUM(stake),0), COALESCE(SUM(tokens),0) FROM clients"
            ).fetchone()
            wrow = db.execute("SELECT COUNT(*), COALESCE(SUM(earnings),0) FROM workers").fetchone()
            # Python ints, not SQL: charged × price may exceed int64 and SQLite would silently go REAL.
            available = sum(
                max(min(bal, stake) + charged * ppt - cost - reserved, 0)
                for bal, stake, charged, ppt, cost, reserved in db.execute(
                    "SELECT balance, stake, charged_tokens, price_per_token, cost, reserved FROM clients"
                )
            )
            seqno, session, last = db.execute(
                "SELECT seqno, session_hash, last_committed_seqno FROM state WHERE id=1"
            ).fetchone()
        return LedgerStatistics(
            clients=int(crow[0]),
            workers=int(wrow[0]),
            requests_reserved=int(counts.get("reserved", 0)),
            requests_settled=int(counts.get("settled", 0)),
            requests_failed=int(counts.get("failed", 0)),
            revenue_nano=int(crow[1]),
            worker_earnings_nano=int(wrow[1]),
            proxy_fees_nano=int(crow[1]) - int(wrow[1]),
            reserved_nano=int(crow[2]),
            client_balance_nano=int(crow[3]),
            client_stake_nano=int(crow[4]),
            client_available_nano=available,
            adjusted_tokens=int(crow[5]),
            seqno=int(seqno),
            last_committed_seqno=int(last),
            session_hash=bytes(session).hex(),
        )

    def _debug_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """All rows of all tables (tests compare before/after)."""
        with self._read() as db:
            return {
                t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("clients", "workers", "requests", "snapshots", "state")
            }


def _insert_client(
    db: sqlite3.Connection, client: str, contract: str, price_per_token: int, t: float
) -> None:
    """A new client account with zero balances (callers have validated every value)."""
    db.execute(
        "INSERT INTO clients (client, contract, price_per_token, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        (client, contract, price_per_token, t, t),
    )
