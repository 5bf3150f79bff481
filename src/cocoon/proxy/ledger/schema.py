"""The billing store's tables and their upgrades (``PRAGMA user_version``).

Version 2 adds what a running answer has relayed (``requests.progress_*``, with the worker's coefficient and
the prices it is paid at), the evidence of capped answers, and merges accounts whose keys are spellings of
one TON address (version 1 keyed accounts by whatever string a peer announced). Version 3 adds the workers'
lasting reputation, the signed evidence of misbehaviour with its slash, and the anchored statistics
(:mod:`.trust`). Version 4 counts finished requests in ``state`` (the operator view reads counters, not
the whole history) and what pruning removed (:mod:`.history`).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable

from cocoon.proxy.errors import LedgerError

__all__ = ["SCHEMA_VERSION", "init_schema"]

SCHEMA_VERSION = 4

_TABLES = """
CREATE TABLE IF NOT EXISTS clients (
    client          TEXT PRIMARY KEY,
    contract        TEXT NOT NULL,
    price_per_token INTEGER NOT NULL,
    balance         INTEGER NOT NULL DEFAULT 0,
    stake           INTEGER NOT NULL DEFAULT 0,
    charged_tokens  INTEGER NOT NULL DEFAULT 0,
    tokens          INTEGER NOT NULL DEFAULT 0,
    cost            INTEGER NOT NULL DEFAULT 0,
    reserved        INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    snap_tokens     INTEGER NOT NULL DEFAULT 0,
    requests        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS workers (
    worker          TEXT PRIMARY KEY,
    contract        TEXT NOT NULL,
    tokens          INTEGER NOT NULL DEFAULT 0,
    earnings        INTEGER NOT NULL DEFAULT 0,
    paid_tokens     INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    snap_tokens     INTEGER NOT NULL DEFAULT 0,
    requests        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS requests (
    request_id      TEXT PRIMARY KEY,
    client          TEXT NOT NULL REFERENCES clients(client),
    worker          TEXT,
    model           TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'failed')),
    reserved        INTEGER NOT NULL,
    prompt_tokens   INTEGER,
    cached_tokens   INTEGER,
    completion_tokens INTEGER,
    reasoning_tokens INTEGER,
    prompt_adjusted INTEGER NOT NULL DEFAULT 0,
    cached_adjusted INTEGER NOT NULL DEFAULT 0,
    completion_adjusted INTEGER NOT NULL DEFAULT 0,
    reasoning_adjusted INTEGER NOT NULL DEFAULT 0,
    total_adjusted  INTEGER NOT NULL DEFAULT 0,
    cost            INTEGER NOT NULL DEFAULT 0,
    worker_earning  INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    finished_at     REAL
) STRICT;
CREATE INDEX IF NOT EXISTS requests_by_state ON requests(state);
CREATE TABLE IF NOT EXISTS snapshots (
    seqno           INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('client', 'worker')),
    account         TEXT NOT NULL,
    tokens          INTEGER NOT NULL,
    PRIMARY KEY (seqno, kind, account)
) STRICT;
CREATE TABLE IF NOT EXISTS state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    seqno           INTEGER NOT NULL,
    session_hash    BLOB NOT NULL,
    last_committed_seqno INTEGER NOT NULL,
    committed_session_hash BLOB NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
INSERT OR IGNORE INTO state VALUES (1, 0, zeroblob(32), 0, zeroblob(32), 0.0);
"""

_V2_COLUMNS = (
    "ALTER TABLE requests ADD COLUMN progress_worker TEXT",
    "ALTER TABLE requests ADD COLUMN progress_coefficient INTEGER",
    "ALTER TABLE requests ADD COLUMN progress_pricing TEXT",  # JSON of PriceParams
    "ALTER TABLE requests ADD COLUMN progress_prompt INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE requests ADD COLUMN progress_completion INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE requests ADD COLUMN progress_at REAL",
)

_V2_EVIDENCE = """
CREATE TABLE IF NOT EXISTS capped_answers (
    request_id      TEXT PRIMARY KEY REFERENCES requests(request_id),
    worker          TEXT NOT NULL,
    model           TEXT NOT NULL,
    claimed         TEXT NOT NULL,
    billable        TEXT NOT NULL,
    completion_bound INTEGER NOT NULL,
    prompt_bound    INTEGER,
    basis           TEXT NOT NULL,
    relayed_text_bytes INTEGER NOT NULL,
    relayed_raw_bytes INTEGER NOT NULL,
    relayed_sha256  TEXT NOT NULL,
    relayed_text    TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    created_at      REAL NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS capped_by_worker ON capped_answers(worker);
"""

_V3_TRUST = """
CREATE TABLE IF NOT EXISTS worker_reputation (
    worker_id       TEXT PRIMARY KEY,
    record          TEXT NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS misbehaviour (
    evidence_id     TEXT PRIMARY KEY,
    worker_id       TEXT NOT NULL,
    owner           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    document        TEXT NOT NULL,
    slash_state     TEXT NOT NULL CHECK (slash_state IN ('none', 'due', 'posted', 'executed', 'voided', 'failed')),
    slash_amount    INTEGER NOT NULL DEFAULT 0,
    slash_deadline  REAL,
    slash_note      TEXT NOT NULL DEFAULT '',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS misbehaviour_by_worker ON misbehaviour(worker_id);
CREATE UNIQUE INDEX IF NOT EXISTS misbehaviour_once ON misbehaviour(kind, request_id, worker_id);
CREATE TABLE IF NOT EXISTS reputation_anchors (
    seqno           INTEGER PRIMARY KEY,
    session_hash    BLOB NOT NULL,
    document        TEXT NOT NULL,
    created_at      REAL NOT NULL
) STRICT;
"""


_V4_COUNTERS = ("settled_requests", "failed_requests", "pruned_requests")


def _add_counters(conn: sqlite3.Connection) -> None:
    """The request counters in ``state``, counted once from the history they replace."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(state)")}
    for column in _V4_COUNTERS:
        if column not in present:
            conn.execute(f"ALTER TABLE state ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        "UPDATE state SET settled_requests=(SELECT COUNT(*) FROM requests WHERE state='settled'),"
        " failed_requests=(SELECT COUNT(*) FROM requests WHERE state='failed') WHERE id=1"
    )


def init_schema(conn: sqlite3.Connection, normalize: Callable[[str], str]) -> None:
    """Create or upgrade the tables in one transaction; ``normalize`` maps an account key to its one spelling."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, 1, 2, 3, SCHEMA_VERSION):
        raise LedgerError(f"billing store schema version {version} is not supported")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:
            _run_script(conn, _TABLES)
            for statement in _V2_COLUMNS:
                conn.execute(statement)
            _run_script(conn, _V2_EVIDENCE)
            _merge_spellings(conn, normalize)
        if version < 3:
            _run_script(conn, _V3_TRUST)
        _add_counters(conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript would commit the open transaction; run the statements one by one inside it.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


_CLIENT_SUMS = ("tokens", "cost", "reserved", "committed_tokens", "snap_tokens", "requests")
_CLIENT_CHAIN = ("balance", "stake", "charged_tokens")  # one contract on chain: the same values
_WORKER_SUMS = ("tokens", "earnings", "committed_tokens", "snap_tokens", "requests")
_WORKER_CHAIN = ("paid_tokens",)


def _merge_spellings(conn: sqlite3.Connection, normalize: Callable[[str], str]) -> None:
    """Fold every account whose key is another spelling of a TON address into the account of its raw form."""
    for table, key, sums, chain in (
        ("clients", "client", _CLIENT_SUMS, _CLIENT_CHAIN),
        ("workers", "worker", _WORKER_SUMS, _WORKER_CHAIN),
    ):
        for old in [r[0] for r in conn.execute(f"SELECT {key} FROM {table} ORDER BY {key}")]:
            new = normalize(old)
            if new != old:
                _merge_account(conn, table, key, old, new, sums, chain)
        for (contract,) in conn.execute(f"SELECT DISTINCT contract FROM {table}").fetchall():
            if contract and normalize(contract) != contract:
                conn.execute(
                    f"UPDATE {table} SET contract=? WHERE contract=?", (normalize(contract), contract)
                )
    _rename_request_workers(conn, normalize)
    _merge_snapshots(conn, normalize)


def _merge_account(
    conn: sqlite3.Connection,
    table: str,
    key: str,
    old: str,
    new: str,
    sums: tuple[str, ...],
    chain: tuple[str, ...],
) -> None:
    cols = ", ".join((*sums, *chain))
    src = conn.execute(f"SELECT {cols} FROM {table} WHERE {key}=?", (old,)).fetchone()
    dst = conn.execute(f"SELECT {cols} FROM {table} WHERE {key}=?", (new,)).fetchone()
    if dst is None:
        # Copy the row under its new key, so that requests can point at it before the old row goes.
        all_cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        rest = ", ".join(c for c in all_cols if c != key)
        conn.execute(
            f"INSERT INTO {table} ({key}, {rest}) SELECT ?, {rest} FROM {table} WHERE {key}=?", (new, old)
        )
    else:
        values = [a + b for a, b in zip(src[: len(sums)], dst[: len(sums)], strict=True)]
        values += [max(a, b) for a, b in zip(src[len(sums) :], dst[len(sums) :], strict=True)]
        assign = ", ".join(f"{c}=?" for c in (*sums, *chain))
        conn.execute(f"UPDATE {table} SET {assign} WHERE {key}=?", (*values, new))
    if table == "clients":
        conn.execute("UPDATE requests SET client=? WHERE client=?", (new, old))
    conn.execute(f"DELETE FROM {table} WHERE {key}=?", (old,))


def _rename_request_workers(conn: sqlite3.Connection, normalize: Callable[[str], str]) -> None:
    workers = [w for (w,) in conn.execute("SELECT DISTINCT worker FROM requests WHERE worker IS NOT NULL")]
    for worker in workers:
        if normalize(worker) != worker:
            conn.execute("UPDATE requests SET worker=? WHERE worker=?", (normalize(worker), worker))


def _merge_snapshots(conn: sqlite3.Connection, normalize: Callable[[str], str]) -> None:
    merged: defaultdict[tuple[int, str, str], int] = defaultdict(int)
    rows = conn.execute("SELECT seqno, kind, account, tokens FROM snapshots").fetchall()
    if all(normalize(account) == account for _, _, account, _ in rows):
        return
    for seqno, kind, account, tokens in rows:
        merged[(seqno, kind, normalize(account))] += tokens
    conn.execute("DELETE FROM snapshots")
    conn.executemany(
        "INSERT INTO snapshots (seqno, kind, account, tokens) VALUES (?, ?, ?, ?)",
        [(*k, v) for k, v in merged.items()],
    )
