"""Requests while they run: reservations, the worker an answer comes from, its durable progress, releases.

A streamed answer is relayed over seconds; if the proxy dies in the middle, what was relayed was still
delivered. :meth:`Requests.assign_worker` records whom and at what prices an answer is paid, and
:meth:`Requests.record_progress` durably records the tokens relayed so far. A request that is released or
recovered at restart while still reserved is charged that recorded progress — never more than its
reservation, never less than the last record — and its worker is paid for it.
"""

from __future__ import annotations

import sqlite3

from cocoon.proxy.errors import InsufficientFunds, RequestConflict, UnknownAccount, UnknownRequest
from cocoon.proxy.ledger import rows
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.records import RequestRecord, RequestState
from cocoon.proxy.ledger.store import LedgerStore
from cocoon.proxy.pricing import MAX_COEFFICIENT, MAX_TOKENS, Charge, PriceParams, price_within

__all__ = ["Requests"]

_NO_CHARGE = Charge.zero()  # what a new reservation has been charged (frozen: one is shared)


def _end_unfinished(db: sqlite3.Connection, record: RequestRecord, now: float) -> RequestRecord:
    """Fail a reserved request, charging its recorded progress (bounded by the reservation) or nothing."""
    progress = record.progress
    if progress is None or progress.usage.total == 0:
        return rows.finish_request(db, record.request_id, None, Charge.zero(), None, now, RequestState.FAILED)
    usage, charge = price_within(progress.usage, progress.coefficient, progress.params, record.reserved_nano)
    return rows.finish_request(
        db, record.request_id, progress.worker, charge, usage, now, RequestState.FAILED
    )


class Requests(LedgerStore):
    def reserve(
        self, request_id: str, client: str, amount: int, now: float, *, model: str = ""
    ) -> RequestRecord:
        """Hold ``amount`` nanoTON of the client's funds for a new request, or raise :class:`InsufficientFunds`.

        Repeating the same reservation (same id, client, amount) returns the stored record.
        """
        request_id = v.ident("request_id", request_id)
        client = v.account("client", client)
        amount = v.integer("amount", amount)
        model = v.ident("model", model, allow_empty=True)
        t = v.timestamp(now)
        with self._tx(durable=False) as db:
            # Inserted first: a new id (the usual case) costs no lookup; a failure below rolls it back.
            try:
                inserted = db.execute(
                    "INSERT INTO requests (request_id, client, model, state, reserved, created_at)"
                    " VALUES (?, ?, ?, 'reserved', ?, ?) ON CONFLICT(request_id) DO NOTHING",
                    (request_id, client, model, amount, t),
                ).rowcount
            except sqlite3.IntegrityError:  # the client's row is missing (the requests → clients key)
                raise InsufficientFunds(client, required=amount, available=0) from None
            if not inserted:
                existing = rows.request_record(db, request_id)
                assert existing is not None
                if (
                    existing.state is RequestState.RESERVED
                    and existing.client == client
                    and existing.reserved_nano == amount
                ):
                    return existing
                raise RequestConflict(f"request {request_id} already exists")
            try:
                totals = rows.client_totals(db, client)  # one read of the client's row
            except UnknownAccount:
                raise InsufficientFunds(client, required=amount, available=0) from None
            if amount > totals.available_nano:
                raise InsufficientFunds(client, required=amount, available=totals.available_nano)
            db.execute(
                "UPDATE clients SET reserved=?, requests=?, updated_at=? WHERE client=?",
                (v.add("reserved", totals.reserved_nano, amount), totals.requests + 1, t, client),
            )
            # The row as just inserted (read back, it would be the same record: one query less).
            return RequestRecord(
                request_id=request_id,
                client=client,
                worker=None,
                model=model,
                state=RequestState.RESERVED,
                reserved_nano=amount,
                usage=None,
                charge=_NO_CHARGE,
                created_at=t,
                finished_at=None,
            )

    def assign_worker(
        self, request_id: str, worker: str, *, coefficient: int, params: PriceParams, now: float
    ) -> RequestRecord:
        """The answer of a reserved request comes from ``worker`` at ``coefficient`` under ``params``.

        Call it when the first byte is relayed, before :meth:`record_progress`. Moving a request to another
        worker is allowed only while nothing was recorded for it (a retry before the first byte).
        """
        request_id = v.ident("request_id", request_id)
        worker = v.account("worker", worker)
        coefficient = v.integer("coefficient", coefficient, MAX_COEFFICIENT)
        params = v.price_params(params)
        t = v.timestamp(now)
        with self._tx(durable=False) as db:
            record = self._reserved(db, request_id)
            p = record.progress
            if (
                p is not None
                and p.usage.total
                and (p.worker, p.coefficient, p.params) != (worker, coefficient, params)
            ):
                raise RequestConflict(f"request {request_id} already relayed tokens from {p.worker}")
            db.execute(
                "UPDATE requests SET progress_worker=?, progress_coefficient=?, progress_pricing=?,"
                " progress_at=? WHERE request_id=?",
                (worker, coefficient, rows.pricing_json(params), t, request_id),
            )
            done = rows.request_record(db, request_id)
            assert done is not None
            return done

    def record_progress(
        self, request_id: str, *, prompt_tokens: int, completion_tokens: int, now: float
    ) -> RequestRecord:
        """Durably record the tokens relayed so far of a running answer (counts only grow).

        Record what the proxy would bill for the answer cut off now: the audited counts (bounded by what was
        relayed and by ``max_tokens``), not the worker's claim.

        A crash or release from here on charges this progress (bounded by the reservation). On a request that
        already finished it changes nothing (a late record racing the settlement) and returns the record.
        """
        request_id = v.ident("request_id", request_id)
        prompt = v.integer("prompt_tokens", prompt_tokens, MAX_TOKENS)
        completion = v.integer("completion_tokens", completion_tokens, MAX_TOKENS)
        t = v.timestamp(now)
        with self._tx() as db:
            record = self._known(db, request_id)
            if record.state is not RequestState.RESERVED:
                return record
            if record.progress is None:
                raise RequestConflict(
                    f"request {request_id} has no worker assigned (call assign_worker first)"
                )
            db.execute(
                "UPDATE requests SET progress_prompt=MAX(progress_prompt, ?),"
                " progress_completion=MAX(progress_completion, ?), progress_at=? WHERE request_id=?",
                (prompt, completion, t, request_id),
            )
            done = rows.request_record(db, request_id)
            assert done is not None
            return done

    def assign_and_record_progress(
        self,
        request_id: str,
        worker: str,
        *,
        coefficient: int,
        params: PriceParams,
        prompt_tokens: int,
        completion_tokens: int,
        now: float,
    ) -> RequestRecord:
        """:meth:`assign_worker` then :meth:`record_progress` in one durable transaction (the relay's
        first progress record of an answer: one commit instead of two). The same checks refuse the
        same input; on a request that already finished it changes nothing and returns the record, as
        :meth:`record_progress` does (the assignment alone would have raised)."""
        request_id = v.ident("request_id", request_id)
        worker = v.account("worker", worker)
        coefficient = v.integer("coefficient", coefficient, MAX_COEFFICIENT)
        params = v.price_params(params)
        prompt = v.integer("prompt_tokens", prompt_tokens, MAX_TOKENS)
        completion = v.integer("completion_tokens", completion_tokens, MAX_TOKENS)
        t = v.timestamp(now)
        with self._tx() as db:
            record = self._known(db, request_id)
            if record.state is not RequestState.RESERVED:
                return record
            p = record.progress
            if (
                p is not None
                and p.usage.total
                and (p.worker, p.coefficient, p.params) != (worker, coefficient, params)
            ):
                raise RequestConflict(f"request {request_id} already relayed tokens from {p.worker}")
            db.execute(
                "UPDATE requests SET progress_worker=?, progress_coefficient=?, progress_pricing=?,"
                " progress_prompt=MAX(progress_prompt, ?), progress_completion=MAX(progress_completion, ?),"
                " progress_at=? WHERE request_id=?",
                (worker, coefficient, rows.pricing_json(params), prompt, completion, t, request_id),
            )
            done = rows.request_record(db, request_id)
            assert done is not None
            return done

    @staticmethod
    def _known(db: sqlite3.Connection, request_id: str) -> RequestRecord:
        record = rows.request_record(db, request_id)
        if record is None:
            raise UnknownRequest(f"unknown request {request_id}")
        return record

    @classmethod
    def _reserved(cls, db: sqlite3.Connection, request_id: str) -> RequestRecord:
        record = cls._known(db, request_id)
        if record.state is not RequestState.RESERVED:
            raise RequestConflict(f"request {request_id} is already {record.state.value}")
        return record

    def release(self, request_id: str, *, now: float) -> RequestRecord:
        """End whatever ``request_id`` still holds: a reserved request fails charging its recorded progress
        (nothing when none was recorded); a settled or failed one is returned unchanged. Meant for a
        ``finally`` after :meth:`settle` / :meth:`fail` may have run.
        """
        request_id = v.ident("request_id", request_id)
        t = v.timestamp(now)
        # Releasing for free needs no disk sync (a restart releases anyway); charging progress moves money.
        with self._read() as db:
            peek = rows.request_record(db, request_id)
        charges = peek is None or (peek.progress is not None and peek.progress.usage.total > 0)
        with self._tx(durable=charges) as db:
            record = self._known(db, request_id)
            if record.state is not RequestState.RESERVED:
                return record
            return _end_unfinished(db, record, t)

    def release_stale(self, *, now: float, older_than: float) -> list[str]:
        """End every request still reserved that was created before ``older_than``; returns their ids.

        For restart after a crash: a request that was never settled never had its answer released in full.
        It is charged what :meth:`record_progress` recorded of it (bounded by its reservation, the worker is
        paid for it), or nothing when nothing was recorded.
        """
        t = v.timestamp(now)
        cutoff = v.timestamp(older_than)
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT request_id FROM requests WHERE state='reserved' AND created_at < ? ORDER BY request_id",
                    (cutoff,),
                )
            ]
            for rid in ids:
                record = rows.request_record(db, rid)
                assert record is not None
                _end_unfinished(db, record, t)
            return ids

    # ------------------------------------------------------------ reads

    def request(self, request_id: str) -> RequestRecord | None:
        request_id = v.ident("request_id", request_id)
        with self._read() as db:
            return rows.request_record(db, request_id)

    def reserved_requests(self) -> list[RequestRecord]:
        with self._read() as db:
            ids = [r[0] for r in db.execute("SELECT request_id FROM requests WHERE state='reserved'")]
            return [r for r in (rows.request_record(db, i) for i in ids) if r is not None]
