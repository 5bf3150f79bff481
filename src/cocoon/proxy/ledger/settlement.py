"""Ending requests with money: settle in full, fail charging what was delivered, settle many in one sync.

:meth:`Settling.settle` and :meth:`Settling.fail` are idempotent per request id: repeating one with the same
data returns the stored record and charges nothing again; repeating it with different data raises
:class:`RequestConflict`. Every one of them is a durable commit (the answer is released only after it).
"""

from __future__ import annotations

from collections.abc import Sequence

from cocoon.proxy.errors import LedgerError, LedgerInputError
from cocoon.proxy.ledger import rows
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.evidence import store_capped_answer
from cocoon.proxy.ledger.records import RequestRecord, RequestState
from cocoon.proxy.ledger.records import Settlement as SettlementItem
from cocoon.proxy.ledger.store import LedgerStore
from cocoon.proxy.metering import AuditResult
from cocoon.proxy.pricing import Charge, TokenCounts

__all__ = ["Settling"]


class Settling(LedgerStore):
    def settle(
        self,
        request_id: str,
        worker: str,
        charge: Charge,
        now: float,
        *,
        usage: TokenCounts | None = None,
        audit: AuditResult | None = None,
    ) -> RequestRecord:
        """Charge a finished request in full and credit its worker; idempotent per request id.

        The store does not cap the charge (hold a bill to its reservation with
        :func:`cocoon.proxy.pricing.price_within`). An unknown worker is registered on the fly, so that money
        earned is never refused. ``audit``: when it capped the worker's claim, its evidence is kept with the
        settlement (:meth:`capped_answers`).
        """
        request_id = v.ident("request_id", request_id)
        worker = v.account("worker", worker)
        charge = v.charge(charge)
        usage = v.usage(usage)
        t = v.timestamp(now)
        with self._tx() as db:
            done = rows.finish_request(db, request_id, worker, charge, usage, t, RequestState.SETTLED)
            store_capped_answer(db, request_id, worker, done.model, audit, t)
            return done

    def settle_many(self, items: Sequence[SettlementItem], now: float) -> list[RequestRecord | LedgerError]:
        """Settle or fail many requests in one durable commit (group commit: one disk sync for all).

        Each item succeeds or fails on its own (a savepoint each): the result list holds, in order, the
        record or the :class:`LedgerError` that item raised. Same rules and idempotency as :meth:`settle` /
        :meth:`fail`. Meant for a service that queues settlements from concurrent requests and writes them
        in batches from one thread, releasing each answer when its batch has returned.
        """
        t = v.timestamp(now)
        if not isinstance(items, Sequence):
            raise LedgerInputError("items must be a sequence of Settlement")
        if len(items) == 1:  # one bill: its transaction is its own savepoint (no nested one)
            try:
                return [self._settle_item(items[0], t)]
            except LedgerError as exc:
                return [exc]
        results: list[RequestRecord | LedgerError] = []
        with self._tx() as db:
            for item in items:
                try:
                    request_id, worker, charge, usage, final = _checked(item)
                    db.execute("SAVEPOINT item")
                    try:
                        done = rows.finish_request(db, request_id, worker, charge, usage, t, final)
                        if worker is not None:
                            store_capped_answer(db, request_id, worker, done.model, item.audit, t)
                        results.append(done)
                    except BaseException:
                        db.execute("ROLLBACK TO item")
                        raise
                    finally:
                        db.execute("RELEASE item")
                except LedgerError as exc:
                    results.append(exc)
        return results

    def _settle_item(self, item: SettlementItem, t: float) -> RequestRecord:
        """One item of :meth:`settle_many` in a transaction of its own (rolled back when it raises)."""
        request_id, worker, charge, usage, final = _checked(item)
        with self._tx() as db:
            done = rows.finish_request(db, request_id, worker, charge, usage, t, final)
            if worker is not None:
                store_capped_answer(db, request_id, worker, done.model, item.audit, t)
            return done

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
        request_id = v.ident("request_id", request_id)
        charge = Charge.zero() if delivered is None else v.charge(delivered)
        if worker is not None:
            worker = v.account("worker", worker)
        elif charge.total_adjusted or charge.client_cost_nano:
            raise LedgerInputError("a delivered charge needs the worker that delivered it")
        usage = v.usage(usage)
        t = v.timestamp(now)
        with self._tx() as db:
            return rows.finish_request(db, request_id, worker, charge, usage, t, RequestState.FAILED)


def _checked(
    item: object,
) -> tuple[str, str | None, Charge, TokenCounts | None, RequestState]:
    """An item of :meth:`Settling.settle_many`, validated: (request id, worker, charge, usage, final state)."""
    if not isinstance(item, SettlementItem):
        raise LedgerInputError(f"expected a Settlement, got {type(item).__name__}")
    request_id = v.ident("request_id", item.request_id)
    charge = v.charge(item.charge)
    worker = None if item.worker is None else v.account("worker", item.worker)
    if item.ok and worker is None:
        raise LedgerInputError("a settled request needs its worker")
    if worker is None and (charge.total_adjusted or charge.client_cost_nano):
        raise LedgerInputError("a delivered charge needs the worker that delivered it")
    usage = v.usage(item.usage)
    return request_id, worker, charge, usage, RequestState.SETTLED if item.ok else RequestState.FAILED
