"""Bills of concurrent requests written together: one durable commit for a whole group (group commit).

A durable commit costs one disk sync (~5 ms on a virtual disk). Each bill goes straight to the store's
writer queue (:class:`~cocoon.core.groupqueue.GroupQueue` under :class:`AsyncLedger`): bills that queue
up while a group is being written run as the next group, one transaction and one disk sync for all of
them, each bill succeeding or failing on its own and answered only after that commit. With one request
at a time a group is one bill: nothing waits longer than it would alone, and no second queue of our
own (a task and a future per bill) sits in front of the writer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import AsyncLedger, RequestRecord, Settlement

__all__ = ["BillQueue"]


class BillQueue:
    def __init__(self, books: Callable[[], AsyncLedger]) -> None:
        self._books = books
        self.bills = 0  # bills written (a view for tests and the operator)

    async def write(self, bill: Settlement) -> RequestRecord:
        """Write ``bill`` durably with the next group; raises the :class:`LedgerError` it met.

        A cancelled caller's bill is still written (the writer queue shields every call)."""
        self.bills += 1
        try:
            (result,) = await self._books().settle_many([bill], time.time())
        except LedgerError:
            raise
        except Exception as exc:  # not a store error (a bug, a closed loop): still a failed bill
            raise LedgerError(f"billing store failed: {exc!r}") from exc
        if isinstance(result, LedgerError):
            raise result
        return result
