"""State anchoring and rollback defence (reference §4.8, §2.7.4).

:meth:`Anchoring.bump_seqno` increments ``seqno`` and snapshots every account whose counter moved; the proxy
posts ``(seqno, session_hash)`` on chain; when it sees it there it calls :meth:`Anchoring.mark_committed`,
which makes the snapshotted counters the ``committed_tokens`` for which IOUs may be signed. If the chain
knows a commit newer than our ``seqno``, or a peer holds a signed record larger than our counters, the store
was restored from an old copy and :class:`StoreRolledBack` is raised.
"""

from __future__ import annotations

import sqlite3

from cocoon.proxy.errors import StoreRolledBack
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.store import LedgerStore

__all__ = ["Anchoring"]

_ACCOUNTS = (("client", "clients", "client"), ("worker", "workers", "worker"))


def _bump(db: sqlite3.Connection, now: float) -> int:
    seqno = int(db.execute("SELECT seqno FROM state WHERE id=1").fetchone()[0]) + 1
    for kind, table, key in _ACCOUNTS:
        db.execute(
            f"INSERT INTO snapshots (seqno, kind, account, tokens)"
            f" SELECT ?, ?, {key}, tokens FROM {table} WHERE tokens != snap_tokens",
            (seqno, kind),
        )
        db.execute(f"UPDATE {table} SET snap_tokens=tokens WHERE tokens != snap_tokens")
    db.execute("UPDATE state SET seqno=?, updated_at=? WHERE id=1", (seqno, now))
    return seqno


class Anchoring(LedgerStore):
    def start_session(self, session_hash: bytes, now: float) -> int:
        """Begin a process session (random 32-byte hash posted with commits); bumps and returns the seqno."""
        session_hash = v.session_hash(session_hash)
        t = v.timestamp(now)
        with self._tx() as db:
            db.execute("UPDATE state SET session_hash=? WHERE id=1", (session_hash,))
            return _bump(db, t)

    def bump_seqno(self, now: float) -> int:
        """Increment the state seqno and snapshot every account whose counter moved; returns the new seqno."""
        t = v.timestamp(now)
        with self._tx() as db:
            return _bump(db, t)

    def mark_committed(self, seqno: int, session_hash: bytes) -> bool:
        """The chain shows our commit of ``seqno``: counters snapshotted at ≤ seqno become committed.

        Returns False when ``seqno`` is not newer than the last commit (a replay; nothing changes).
        Raises :class:`StoreRolledBack` when ``seqno`` is beyond anything this store has produced.
        """
        seqno = v.integer("seqno", seqno, 2**32 - 1)
        session_hash = v.session_hash(session_hash)
        with self._tx() as db:
            current, last = db.execute("SELECT seqno, last_committed_seqno FROM state WHERE id=1").fetchone()
            if seqno > current:
                raise StoreRolledBack(f"chain has commit {seqno}, the store only reached {current}")
            if seqno <= last:
                return False
            for kind, table, key in _ACCOUNTS:
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

    @property
    def seqno(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT seqno FROM state WHERE id=1").fetchone()[0])

    # ------------------------------------------------------------ rollback checks

    def check_not_rolled_back(self, chain_committed_seqno: int) -> None:
        """Refuse to serve from a store older than the last commit on chain (raises :class:`StoreRolledBack`)."""
        chain_committed_seqno = v.integer("chain_committed_seqno", chain_committed_seqno, 2**32 - 1)
        current = self.seqno
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
        account = v.account(kind, account)
        reported_tokens = v.integer("reported_tokens", reported_tokens)
        table = "workers" if kind == "worker" else "clients"
        with self._read() as db:
            row = db.execute(f"SELECT tokens FROM {table} WHERE {kind}=?", (account,)).fetchone()
        ours = 0 if row is None else int(row[0])
        if reported_tokens > ours:
            raise StoreRolledBack(
                f"{kind} {account} holds a signed record of {reported_tokens} tokens, store has {ours}"
            )
