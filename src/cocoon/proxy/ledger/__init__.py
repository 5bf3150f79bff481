"""The proxy's durable billing store: accounts, requests, settlement, state anchoring, evidence, statistics.

:class:`BillingLedger` is the synchronous store (one SQLite writer, WAL, ``synchronous=FULL``);
:class:`AsyncLedger` offers the same methods as coroutines for the event loop: every write runs on one writer
thread, reads run concurrently on their own connections.
"""

from cocoon.proxy.ledger.async_ledger import AsyncLedger
from cocoon.proxy.ledger.billing import BillingLedger
from cocoon.proxy.ledger.records import (
    CappedAnswer,
    ClientTotals,
    LedgerStatistics,
    Progress,
    RequestRecord,
    RequestState,
    Settlement,
    WorkerTotals,
)

__all__ = [
    "AsyncLedger",
    "BillingLedger",
    "CappedAnswer",
    "ClientTotals",
    "LedgerStatistics",
    "Progress",
    "RequestRecord",
    "RequestState",
    "Settlement",
    "WorkerTotals",
]
