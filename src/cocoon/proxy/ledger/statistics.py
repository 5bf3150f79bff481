"""Totals for the operator view, and a raw dump of every table (tests compare before/after)."""

from __future__ import annotations

from typing import Any

from cocoon.proxy.ledger import rows
from cocoon.proxy.ledger.records import LedgerStatistics
from cocoon.proxy.ledger.store import LedgerStore

__all__ = ["Statistics"]

_TABLES = ("clients", "workers", "requests", "snapshots", "state", "capped_answers")


class Statistics(LedgerStore):
    def statistics(self) -> LedgerStatistics:
        """An immutable snapshot of the totals for the operator view."""
        with self._read() as db:
            # Only the running requests are counted (an index lookup); finished ones are counters in
            # ``state``, not a scan of the history (which grows with every request until pruned).
            reserved = db.execute("SELECT COUNT(*) FROM requests WHERE state='reserved'").fetchone()[0]
            crow = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(cost),0), COALESCE(SUM(reserved),0), COALESCE(SUM(balance),0),"
                " COALESCE(SUM(stake),0), COALESCE(SUM(tokens),0) FROM clients"
            ).fetchone()
            wrow = db.execute("SELECT COUNT(*), COALESCE(SUM(earnings),0) FROM workers").fetchone()
            # Python ints, not SQL: charged × price may exceed int64 and SQLite would silently go REAL.
            available = sum(
                rows.available(*r)
                for r in db.execute(
                    "SELECT balance, stake, charged_tokens, price_per_token, cost, reserved FROM clients"
                )
            )
            seqno, session, last, settled, failed, pruned = db.execute(
                "SELECT seqno, session_hash, last_committed_seqno, settled_requests, failed_requests,"
                " pruned_requests"
                " FROM state WHERE id=1"
            ).fetchone()
        return LedgerStatistics(
            clients=int(crow[0]),
            workers=int(wrow[0]),
            requests_reserved=int(reserved),
            requests_settled=int(settled),
            requests_failed=int(failed),
            requests_pruned=int(pruned),
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
            return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in _TABLES}
