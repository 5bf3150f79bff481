"""What the proxy keeps about its workers' trustworthiness, in the billing store (schema version 3).

* ``worker_reputation``: one JSON record per stable worker id (:mod:`cocoon.proxy.reputation` owns the
  shape), so a restart keeps a worker's record and its suspension;
* ``misbehaviour``: signed evidence (:mod:`cocoon.proxy.slashing`), one row per (kind, request, worker),
  with the state of the slash it may carry: ``none`` (no stake or no chain) → ``due`` (to be posted) →
  ``posted`` (deadline known) → ``executed`` or ``voided`` (the worker disputed it), or ``failed``;
* ``reputation_anchors``: the statistics document anchored by each recent state commit (the last
  :data:`KEEP_ANCHORS`), so clients can check what they read against the chain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.proxy.errors import LedgerInputError
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.store import LedgerStore

__all__ = ["KEEP_ANCHORS", "SLASH_STATES", "AnchoredStats", "MisbehaviourRecord", "TrustRecords"]

KEEP_ANCHORS = 16
SLASH_STATES = ("none", "due", "posted", "executed", "voided", "failed")
MAX_DOCUMENT_CHARS = 1 << 20
MAX_RECORDS = 100_000


@dataclass(frozen=True, slots=True)
class MisbehaviourRecord:
    evidence_id: str  # hex SHA-256 of the signed document
    worker_id: str
    owner: str
    kind: str
    request_id: str
    document: dict[str, Any]
    slash_state: str
    slash_amount: int
    slash_deadline: float | None
    slash_note: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class AnchoredStats:
    seqno: int
    session_hash: bytes
    document: dict[str, Any]
    created_at: float


def _json(name: str, value: object) -> str:
    if not isinstance(value, Mapping):
        raise LedgerInputError(f"{name} must be a mapping")
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LedgerInputError(f"{name} is not JSON: {exc}") from exc
    if len(text) > MAX_DOCUMENT_CHARS:
        raise LedgerInputError(f"{name} is larger than {MAX_DOCUMENT_CHARS} characters")
    return text


def _state(value: object) -> str:
    if value not in SLASH_STATES:
        raise LedgerInputError(f"slash state must be one of {', '.join(SLASH_STATES)}")
    assert isinstance(value, str)
    return value


def _deadline(value: object) -> float | None:
    return None if value is None else v.timestamp(value)


def _misbehaviour(row: Any) -> MisbehaviourRecord:
    return MisbehaviourRecord(
        evidence_id=row[0],
        worker_id=row[1],
        owner=row[2],
        kind=row[3],
        request_id=row[4],
        document=json.loads(row[5]),
        slash_state=row[6],
        slash_amount=int(row[7]),
        slash_deadline=row[8],
        slash_note=row[9],
        created_at=row[10],
        updated_at=row[11],
    )


_COLUMNS = (
    "evidence_id, worker_id, owner, kind, request_id, document, slash_state, slash_amount, slash_deadline,"
    " slash_note, created_at, updated_at"
)


class TrustRecords(LedgerStore):
    # ------------------------------------------------------------ reputation

    def save_reputation(self, records: Mapping[str, Mapping[str, Any]], now: float) -> None:
        """Replace the records of the given worker ids (others stay) in one durable transaction."""
        t = v.timestamp(now)
        if not isinstance(records, Mapping) or len(records) > MAX_RECORDS:
            raise LedgerInputError(f"records must be a mapping of at most {MAX_RECORDS} worker ids")
        rows = [(v.ident("worker_id", w), _json("record", r), t) for w, r in records.items()]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO worker_reputation (worker_id, record, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(worker_id) DO UPDATE SET record=excluded.record, updated_at=excluded.updated_at",
                rows,
            )

    def reputation(self) -> dict[str, dict[str, Any]]:
        """Every stored worker record, by worker id."""
        with self._read() as db:
            found = db.execute("SELECT worker_id, record FROM worker_reputation ORDER BY worker_id")
            return {w: json.loads(r) for w, r in found}

    # ------------------------------------------------------------ evidence

    def add_misbehaviour(
        self,
        *,
        evidence_id: str,
        worker_id: str,
        owner: str,
        kind: str,
        request_id: str,
        document: Mapping[str, Any],
        slash_state: str,
        slash_amount: int,
        now: float,
    ) -> bool:
        """Keep signed evidence durably; False (nothing written) when this (kind, request, worker) is known."""
        row = (
            v.ident("evidence_id", evidence_id),
            v.ident("worker_id", worker_id),
            v.account("owner", owner),
            v.ident("kind", kind),
            v.ident("request_id", request_id),
            _json("document", document),
            _state(slash_state),
            v.integer("slash_amount", slash_amount),
            v.timestamp(now),
            v.timestamp(now),
        )
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO misbehaviour (evidence_id, worker_id, owner, kind, request_id, document,"
                " slash_state, slash_amount, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return cursor.rowcount == 1

    def set_slash_state(
        self,
        evidence_id: str,
        state: str,
        *,
        now: float,
        deadline: float | None = None,
        note: str = "",
        amount: int | None = None,
    ) -> None:
        """Move the slash of one piece of evidence (``deadline``/``amount`` kept when not given)."""
        evidence_id = v.ident("evidence_id", evidence_id)
        state = _state(state)
        t = v.timestamp(now)
        deadline = _deadline(deadline)
        note = v.ident("note", note, allow_empty=True)
        amount = None if amount is None else v.integer("amount", amount)
        with self._tx() as db:
            found = db.execute(
                "UPDATE misbehaviour SET slash_state=?, slash_note=?, updated_at=?,"
                " slash_deadline=COALESCE(?, slash_deadline), slash_amount=COALESCE(?, slash_amount)"
                " WHERE evidence_id=?",
                (state, note, t, deadline, amount, evidence_id),
            )
            if found.rowcount != 1:
                raise LedgerInputError(f"no evidence {evidence_id}")

    def misbehaviour(
        self, *, worker_id: str | None = None, states: tuple[str, ...] | None = None
    ) -> list[MisbehaviourRecord]:
        """Evidence, oldest first (of one worker, in some slash states, when given)."""
        where, args = [], []
        if worker_id is not None:
            where.append("worker_id=?")
            args.append(v.ident("worker_id", worker_id))
        if states is not None:
            where.append(f"slash_state IN ({', '.join('?' for _ in states)})")
            args.extend(_state(s) for s in states)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            found = db.execute(
                f"SELECT {_COLUMNS} FROM misbehaviour{clause} ORDER BY created_at, evidence_id", args
            )
            return [_misbehaviour(r) for r in found]

    # ------------------------------------------------------------ anchored statistics

    def save_anchor(self, seqno: int, session_hash: bytes, document: Mapping[str, Any], now: float) -> None:
        """Keep the statistics a state commit anchors (the last :data:`KEEP_ANCHORS` are kept)."""
        row = (
            v.integer("seqno", seqno, 2**63 - 1),
            v.session_hash(session_hash),
            _json("document", document),
            v.timestamp(now),
        )
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO reputation_anchors (seqno, session_hash, document, created_at)"
                " VALUES (?, ?, ?, ?)",
                row,
            )
            db.execute(
                "DELETE FROM reputation_anchors WHERE seqno NOT IN"
                " (SELECT seqno FROM reputation_anchors ORDER BY seqno DESC LIMIT ?)",
                (KEEP_ANCHORS,),
            )

    def anchor(self, seqno: int) -> AnchoredStats | None:
        """The statistics anchored by commit ``seqno`` (None when unknown or no longer kept)."""
        seqno = v.integer("seqno", seqno, 2**63 - 1)
        with self._read() as db:
            row = db.execute(
                "SELECT seqno, session_hash, document, created_at FROM reputation_anchors WHERE seqno=?",
                (seqno,),
            ).fetchone()
        if row is None:
            return None
        created = float(row[3])
        assert math.isfinite(created)
        return AnchoredStats(int(row[0]), bytes(row[1]), json.loads(row[2]), created)
