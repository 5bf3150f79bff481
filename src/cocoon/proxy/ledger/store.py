"""The SQLite connections that write the billing store, and the per-thread connections that read it.

WAL mode with ``synchronous=FULL``: a write that returns has reached the disk (writes that need no sync
commit on a second connection in ``synchronous=NORMAL``, never at the same time as the first). One writer: an exclusive lock
file next to the database refuses a second process (:class:`StoreBusy`), and a lock serialises the writes of
this process on one connection. Reads use one connection per thread, so they run concurrently with the
writer and with each other (WAL readers see the last committed state and never block the writer).
The files are this user's only: the database, its -wal/-shm and the lock file 0600, folders it makes 0700.

Group commit: :meth:`LedgerStore.run_group` runs many calls in one transaction, each in a savepoint of
its own (a call that fails leaves no trace and fails alone), with one disk sync for all of them. The
results are returned only after that commit, so no caller acts on a write that is not on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cocoon.core.statedir import private_dir
from cocoon.proxy.errors import LedgerError, StoreBusy
from cocoon.proxy.ledger.schema import init_schema
from cocoon.proxy.ledger.validate import normalized

__all__ = ["GroupCall", "LedgerStore"]

# (call, durable): a call of a group and whether its writes must reach the disk before it returns.
GroupCall = tuple[Callable[[], Any], bool]

_PRIVATE_FILE = 0o600


def _private_files(path: Path) -> None:
    """Make missing folders 0700 and the store's files 0600 (SQLite gives -wal/-shm the database's mode)."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
        if name.exists() and os.stat(name).st_mode & 0o077:
            os.chmod(name, _PRIVATE_FILE)  # a store made by an older version


class LedgerStore:
    """Connections, transactions and the writer lock; the ledger's concerns build on :meth:`_tx` / :meth:`_read`."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()  # re-entered by the calls of a group (run_group)
        self._group: _Group | None = None  # the group transaction open on the writer, if any
        self._closed = True
        try:
            _private_files(self._path)
        except OSError as exc:
            raise LedgerError(f"cannot create billing store {self._path}: {exc}") from exc
        self._lock_fd = os.open(f"{self._path}.lock", os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise StoreBusy(f"billing store {self._path.name} is held by another process") from exc
        try:
            self._conn = self._connect()
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"billing store could not switch to WAL (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            init_schema(self._conn, normalized)
            # Writes that need no disk sync commit on a second connection, so neither connection
            # switches its sync mode back and forth (two PRAGMAs per request). The two never write at
            # once: every write holds the store's lock, and a transaction commits before it is released.
            self._light = self._connect()
            self._light.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            raise
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close every connection and release the writer lock; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._readers_lock:
                    for reader in self._readers:
                        reader.close()
                    self._readers.clear()
                self._light.close()
                self._conn.close()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls it back, SQLite errors become LedgerError.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``): used only for writes
        whose loss in a power cut is harmless — reservations (a restart releases them anyway) and account
        registration. Process crashes lose nothing even then (the WAL is in the OS cache), and the next
        durable commit syncs the whole WAL, so a settled request never lacks its reservation row.
        Inside :meth:`run_group` the transaction is a savepoint of the group's.
        """
        with self._lock:
            if self._closed:
                raise LedgerError("billing store is closed")
            group = self._group
            if group is not None and group.thread == threading.get_ident():
                if group.bare:  # the group's one call: its transaction needs no savepoint inside
                    group.bare = False
                    with self._bare(group, durable=durable) as db:
                        yield db
                    return
                with self._savepoint(group, durable=durable) as db:
                    yield db
                return
            conn = self._conn if durable else self._light
            try:
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
    def _bare(self, group: _Group, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """The first writes of a group's only call: nothing precedes them in the transaction, so a
        failure undoes them by rolling it back and beginning anew (what ROLLBACK TO would do), and
        two savepoint statements are saved on every lone call."""
        conn = group.conn
        group.unsynced = group.unsynced or (durable and not group.durable)
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"billing store error: {exc}") from exc
            raise

    @contextmanager
    def _savepoint(self, group: _Group, *, durable: bool) -> Iterator[sqlite3.Connection]:
        conn = group.conn
        group.unsynced = group.unsynced or (durable and not group.durable)
        try:
            conn.execute("SAVEPOINT call")
        except sqlite3.Error as exc:
            raise LedgerError(f"billing store error: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK TO call")
            conn.execute("RELEASE call")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"billing store error: {exc}") from exc
            raise
        try:
            conn.execute("RELEASE call")
        except sqlite3.Error as exc:
            raise LedgerError(f"billing store error: {exc}") from exc

    def run_group(self, calls: Sequence[GroupCall]) -> list[Any]:
        """Run ``calls`` in order in one transaction (group commit); call on the writer thread only.

        Each call's writes (its :meth:`_tx`) are a savepoint: one that raises is rolled back and its
        exception is its result; the others commit together, with one disk sync when any of them is
        durable. If the commit itself fails, every call's result is that :class:`LedgerError`.
        """
        results: list[Any] = []
        with self._lock:
            if self._closed:
                error = LedgerError("billing store is closed")
                return [error for _ in calls]
            durable = any(durable for _, durable in calls)
            conn = self._conn if durable else self._light
            group = _Group(threading.get_ident(), conn, durable=durable, bare=len(calls) == 1)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                error = LedgerError(f"billing store unavailable: {exc}")
                return [error for _ in calls]
            self._group = group
            try:
                for call, _ in calls:
                    try:
                        results.append(call())
                    except sqlite3.Error as exc:
                        results.append(LedgerError(f"billing store error: {exc}"))
                    except Exception as exc:  # that call's own failure: its savepoint is rolled back
                        results.append(exc)
                conn.execute("COMMIT")
                if group.unsynced:  # a call wrote durably in a group that was not: sync the WAL now
                    self._sync_wal()
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not isinstance(exc, sqlite3.Error | OSError):
                    raise
                error = LedgerError(f"billing store error: {exc}")
                return [error for _ in calls]
            finally:
                self._group = None
        return results

    def manual_checkpoints(self) -> None:
        """No automatic checkpoint at commit: the owner calls :meth:`checkpoint` on a thread of its
        choice (SQLite's automatic one runs in whichever thread commits)."""
        with self._lock:
            for conn in (self._conn, self._light):  # a per-connection setting
                conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database (passive: never waits for readers)."""
        # A checkpoint that cannot run now runs at the next one.
        with self._lock, contextlib.suppress(sqlite3.Error):
            if not self._closed:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _sync_wal(self) -> None:
        """What ``synchronous=FULL`` does at a WAL commit: the WAL file reaches the disk."""
        fd = os.open(f"{self._path}-wal", os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot on this thread's read connection (concurrent with the writer)."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerError(f"billing store error: {exc}") from exc

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerError("billing store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._readers_lock:  # not the writer's lock: a reader never waits for a write
                if self._closed:
                    raise LedgerError("billing store is closed")
                try:
                    conn = self._connect()
                    conn.execute("PRAGMA query_only=ON")
                except sqlite3.Error as exc:
                    raise LedgerError(f"billing store unavailable: {exc}") from exc
                self._readers.append(conn)
            self._local.conn = conn
        return conn


class _Group:
    """The group transaction open on the writer thread (:meth:`LedgerStore.run_group`)."""

    __slots__ = ("bare", "conn", "durable", "thread", "unsynced")

    def __init__(self, thread: int, conn: sqlite3.Connection, *, durable: bool, bare: bool = False) -> None:
        self.thread = thread
        self.conn = conn  # the connection of its sync mode (LedgerStore._light for a light group)
        self.durable = durable
        self.unsynced = False  # a call asked for durability the group's mode does not give
        self.bare = bare  # a lone call whose first transaction has not begun (see LedgerStore._bare)
