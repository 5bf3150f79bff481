"""Rows ↔ records, and the one function that ends a request (shared by settlement, release and recovery).

Every function here runs inside a transaction or snapshot the caller opened; callers validated the values.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace

from cocoon.proxy.errors import RequestConflict, UnknownAccount, UnknownRequest
from cocoon.proxy.ledger.records import ClientTotals, Progress, RequestRecord, RequestState, WorkerTotals
from cocoon.proxy.ledger.validate import add
from cocoon.proxy.pricing import Charge, PriceParams, TokenCounts

__all__ = [
    "client_totals",
    "finish_request",
    "insert_client",
    "pricing_json",
    "request_record",
    "worker_totals",
]

_REQUEST_COLUMNS = (
    "request_id, client, worker, model, state, reserved, prompt_tokens, cached_tokens, completion_tokens,"
    " reasoning_tokens, prompt_adjusted, cached_adjusted, completion_adjusted, reasoning_adjusted,"
    " total_adjusted, cost, worker_earning, created_at, finished_at, progress_worker, progress_coefficient,"
    " progress_pricing, progress_prompt, progress_completion"
)

_COUNT_FINISHED = {
    RequestState.SETTLED: "UPDATE state SET settled_requests=settled_requests+1 WHERE id=1",
    RequestState.FAILED: "UPDATE state SET failed_requests=failed_requests+1 WHERE id=1",
}


def available(balance: int, stake: int, charged: int, price_per_token: int, cost: int, reserved: int) -> int:
    """The reference's rule: ``min(balance, stake) + charged × price − cost − reserved``, never below 0."""
    return max(min(balance, stake) + charged * price_per_token - cost - reserved, 0)


def client_totals(db: sqlite3.Connection, client: str) -> ClientTotals:
    row = db.execute(
        "SELECT client, contract, price_per_token, balance, stake, charged_tokens, tokens, cost, reserved,"
        " committed_tokens, requests FROM clients WHERE client=?",
        (client,),
    ).fetchone()
    if row is None:
        raise UnknownAccount(f"unknown client {client}")
    (name, contract, ppt, balance, stake, charged, tokens, cost, reserved, committed, requests) = row
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
        available_nano=available(balance, stake, charged, ppt, cost, reserved),
    )


def worker_totals(db: sqlite3.Connection, worker: str) -> WorkerTotals:
    row = db.execute(
        "SELECT worker, contract, tokens, earnings, paid_tokens, committed_tokens, requests"
        " FROM workers WHERE worker=?",
        (worker,),
    ).fetchone()
    if row is None:
        raise UnknownAccount(f"unknown worker {worker}")
    return WorkerTotals(*row)


def pricing_json(params: PriceParams) -> str:
    return json.dumps(asdict(params), sort_keys=True)


def _progress(row: tuple[object, ...]) -> Progress | None:
    worker, coefficient, pricing, prompt, completion = row
    if not isinstance(worker, str) or not isinstance(coefficient, int) or not isinstance(pricing, str):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    return Progress(
        worker=worker,
        coefficient=coefficient,
        params=PriceParams(**json.loads(pricing)),
        usage=TokenCounts(prompt=prompt, completion=completion),
    )


def request_record(db: sqlite3.Connection, request_id: str) -> RequestRecord | None:
    row = db.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE request_id=?", (request_id,)).fetchone()
    if row is None:
        return None
    usage = None if row[6] is None else TokenCounts(row[6], row[7], row[8], row[9])
    charge = Charge(row[10], row[11], row[12], row[13], row[14], row[15], row[16], row[15] - row[16])
    state = RequestState(row[4])
    return RequestRecord(
        request_id=row[0],
        client=row[1],
        worker=row[2],
        model=row[3],
        state=state,
        reserved_nano=row[5],
        usage=usage,
        charge=charge,
        created_at=row[17],
        finished_at=row[18],
        progress=_progress(row[19:24]) if state is RequestState.RESERVED else None,
    )


def insert_client(db: sqlite3.Connection, client: str, contract: str, price_per_token: int, t: float) -> None:
    """A new client account with zero balances."""
    db.execute(
        "INSERT INTO clients (client, contract, price_per_token, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        (client, contract, price_per_token, t, t),
    )


def _credit_worker(db: sqlite3.Connection, worker: str, charge: Charge, now: float) -> None:
    row = db.execute("SELECT tokens, earnings, requests FROM workers WHERE worker=?", (worker,)).fetchone()
    if row is None:
        # Money earned is never refused: an unknown worker is registered on the fly.
        db.execute(
            "INSERT INTO workers (worker, contract, created_at, updated_at) VALUES (?, '', ?, ?)",
            (worker, now, now),
        )
        row = (0, 0, 0)
    db.execute(
        "UPDATE workers SET tokens=?, earnings=?, requests=?, updated_at=? WHERE worker=?",
        (
            add("worker tokens", row[0], charge.total_adjusted),
            add("worker earnings", row[1], charge.worker_earning_nano),
            row[2] + 1,
            now,
            worker,
        ),
    )


def finish_request(
    db: sqlite3.Connection,
    request_id: str,
    worker: str | None,
    charge: Charge,
    usage: TokenCounts | None,
    now: float,
    final: RequestState,
) -> RequestRecord:
    """Move a reserved request to ``final``, charging ``charge``; a same-data replay of a finished one is a no-op."""
    record = request_record(db, request_id)
    if record is None:
        raise UnknownRequest(f"unknown request {request_id}")
    if record.state is not RequestState.RESERVED:
        if record.state is final and record.charge == charge and record.worker == worker:
            return record  # a replay: already written, charge nothing again
        raise RequestConflict(f"request {request_id} is already {record.state.value}")
    crow = db.execute(
        "SELECT tokens, cost, reserved FROM clients WHERE client=?", (record.client,)
    ).fetchone()
    db.execute(
        "UPDATE clients SET tokens=?, cost=?, reserved=?, updated_at=? WHERE client=?",
        (
            add("client tokens", crow[0], charge.total_adjusted),
            add("client cost", crow[1], charge.client_cost_nano),
            max(crow[2] - record.reserved_nano, 0),
            now,
            record.client,
        ),
    )
    if worker is not None:
        _credit_worker(db, worker, charge, now)
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
    db.execute(_COUNT_FINISHED[final])  # the operator view's counts
    # The row as just written (read back, it would be the same record: one query less per bill).
    return replace(
        record, worker=worker, state=final, usage=usage, charge=charge, finished_at=now, progress=None
    )
