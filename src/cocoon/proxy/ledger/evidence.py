"""Evidence of capped answers: when a worker claimed more usage than the relayed answer can hold, the proxy
bills the bound and keeps here what it saw (claim, bound, basis, digest and text of what was relayed), in the
same transaction as the settlement, so a dispute or a registry decision can be checked later."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import astuple
from typing import Any

from cocoon.proxy.errors import LedgerInputError
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.records import CappedAnswer
from cocoon.proxy.ledger.store import LedgerStore
from cocoon.proxy.metering import AuditResult
from cocoon.proxy.pricing import TokenCounts

__all__ = ["Evidence", "store_capped_answer"]


def _audit(value: object) -> AuditResult | None:
    if value is None:
        return None
    if not isinstance(value, AuditResult):
        raise LedgerInputError(f"audit must be an AuditResult or None, got {type(value).__name__}")
    return value


def store_capped_answer(
    db: sqlite3.Connection, request_id: str, worker: str, model: str, audit: object, now: float
) -> None:
    """Keep the evidence of ``audit`` when it capped the claim; an audit that passed leaves no row."""
    checked = _audit(audit)
    if checked is None or not checked.over_reported:
        return
    db.execute(
        "INSERT OR REPLACE INTO capped_answers (request_id, worker, model, claimed, billable, completion_bound,"
        " prompt_bound, basis, relayed_text_bytes, relayed_raw_bytes, relayed_sha256, relayed_text, reasons,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            worker,
            model,
            json.dumps(astuple(checked.claimed)),
            json.dumps(astuple(checked.billable)),
            checked.completion_bound,
            checked.prompt_bound,
            checked.basis,
            checked.text_bytes,
            checked.raw_bytes,
            checked.raw_sha256,
            checked.text_excerpt,
            json.dumps(list(checked.reasons)),
            now,
        ),
    )


def _record(row: Any) -> CappedAnswer:
    (
        rid,
        worker,
        model,
        claimed,
        billable,
        c_bound,
        p_bound,
        basis,
        text_b,
        raw_b,
        digest,
        text,
        reasons,
        at,
    ) = row
    return CappedAnswer(
        request_id=rid,
        worker=worker,
        model=model,
        claimed=TokenCounts(*json.loads(claimed)),
        billable=TokenCounts(*json.loads(billable)),
        completion_bound=c_bound,
        prompt_bound=p_bound,
        basis=basis,
        relayed_text_bytes=text_b,
        relayed_raw_bytes=raw_b,
        relayed_sha256=digest,
        relayed_text=text,
        reasons=tuple(json.loads(reasons)),
        created_at=at,
    )


class Evidence(LedgerStore):
    def capped_answers(self, *, worker: str | None = None) -> list[CappedAnswer]:
        """The evidence of every capped answer (of one worker when given), oldest first."""
        where, args = ("", ()) if worker is None else (" WHERE worker=?", (v.account("worker", worker),))
        with self._read() as db:
            found = db.execute(f"SELECT * FROM capped_answers{where} ORDER BY created_at, request_id", args)
            return [_record(r) for r in found]
