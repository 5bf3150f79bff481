"""Finished requests are history: kept for a while (answers to "what happened to request X"), then pruned.

A proxy writes one ``requests`` row per request, about 200 bytes with its key and index: 200 MB per
million requests. Nothing that moves money reads an old row — every account keeps its own running
totals, and the operator view reads counters (``state.settled_requests`` / ``failed_requests``) — so
finished rows made before the retention window are deleted, in batches that hold the writer only
briefly (by creation time: rows are stored in creation order, so a pass stops at the first row inside
the window).
Never pruned: a request still reserved (its funds are held; a restart settles it), and one that
evidence points at (``capped_answers``, ``misbehaviour``), which stays as long as the evidence does.
A pruned id that comes back is a new request, billed as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.store import LedgerStore

__all__ = ["PRUNE_BATCH", "History", "PruneBatch"]

PRUNE_BATCH = 2000  # rows looked at per transaction: a few ms of the writer at a time

_KEPT_BY_EVIDENCE = (
    " AND NOT EXISTS (SELECT 1 FROM capped_answers c WHERE c.request_id = requests.request_id)"
    " AND NOT EXISTS (SELECT 1 FROM misbehaviour m WHERE m.request_id = requests.request_id)"
)


@dataclass(frozen=True, slots=True)
class PruneBatch:
    deleted: int  # rows deleted by this batch
    last_rowid: int  # the last row it looked at: where the next batch starts
    more: bool  # rows created before the cutoff may follow


class History(LedgerStore):
    def prune_history(self, *, before: float, after_rowid: int = 0, limit: int = PRUNE_BATCH) -> PruneBatch:
        """Delete finished requests created before ``before`` among the next ``limit`` rows after
        ``after_rowid`` (rows are in creation order). Call again from ``last_rowid`` while ``more``."""
        cutoff = v.timestamp(before)
        start = v.integer("after_rowid", after_rowid)
        if not 1 <= limit <= 100_000:
            raise ValueError("limit must be in [1, 100000]")
        with self._tx(durable=False) as db:  # lost in a power cut: pruned again at the next pass
            window = db.execute(
                "SELECT rowid, created_at FROM requests WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (start, limit),
            ).fetchall()
            if not window:
                return PruneBatch(0, start, more=False)
            last = int(window[-1][0])
            deleted = db.execute(
                "DELETE FROM requests WHERE rowid > ? AND rowid <= ? AND state != 'reserved'"
                " AND created_at < ?" + _KEPT_BY_EVIDENCE,
                (start, last, cutoff),
            ).rowcount
            if deleted:
                db.execute("UPDATE state SET pruned_requests=pruned_requests+? WHERE id=1", (deleted,))
            # A window that reached a request made after the cutoff is past everything prunable.
            more = len(window) == limit and float(window[-1][1]) < cutoff
            return PruneBatch(deleted, last, more=more)
