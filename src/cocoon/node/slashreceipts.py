# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""Slash receipts: the proxy's signed word that a request was served correctly, held by the worker.

When a proxy on a chain accepts an answer as correctly served (billed as claimed, not capped), it
signs a :class:`~cocoon.chain.SlashReceipt` (the worker contract, the request's evidence hash
:func:`request_evidence_hash`, the adjusted tokens it accepted) with its chain signing key and sends
it to the worker (a ``slash_receipt`` notify). The worker keeps it (:class:`HeldReceipts`, a SQLite
file in its home, the newest :data:`KEEP` receipts). Should the same proxy later claim a slash naming
that request's evidence hash, the receipt contradicts the claim: :func:`dispute_pending` (``cocoon
worker dispute``) finds it for the claim its contract holds and voids the claim on chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoon import net
from cocoon.chain import (
    AccountNotFound,
    AddressError,
    Chain,
    MessageError,
    SignatureError,
    SlashReceipt,
    WalletClient,
    dispute_slash,
    normalize_address,
    parse_address,
    read_worker_state,
)
from cocoon.core.statedir import private_dir
from cocoon.errors import CocoonError

__all__ = [
    "KEEP",
    "SLASH_RECEIPT",
    "DisputeResult",
    "HeldReceipts",
    "ReceiptRefused",
    "dispute_pending",
    "receipt_params",
    "request_evidence_hash",
]

SLASH_RECEIPT = "slash_receipt"
STORE_NAME = "slash-receipts.sqlite"
KEEP = 200_000
_DOMAIN = b"cocoon-slash-request-v1\n"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS receipts (target TEXT NOT NULL, evidence_hash TEXT NOT NULL,"
    " tokens INTEGER NOT NULL, signature TEXT NOT NULL, signing_key TEXT NOT NULL,"
    " request_id TEXT NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (target, evidence_hash))"
)

log = logging.getLogger(__name__)


class ReceiptRefused(CocoonError):
    """A slash receipt is malformed or not signed by the proxy key the link announced."""


def request_evidence_hash(request_id: str) -> bytes:
    """The evidence hash a slash claim and a slash receipt name for one request (or canary)."""
    return hashlib.sha256(_DOMAIN + request_id.encode()).digest()


def receipt_params(receipt: SlashReceipt, *, request_id: str) -> dict[str, Any]:
    """The notify's params for ``receipt``."""
    return {
        "target": receipt.target.to_str(),
        "evidence_hash": receipt.evidence_hash.hex(),
        "tokens": receipt.tokens,
        "signature": receipt.signature.hex(),
        "request_id": request_id,
    }


def _parse(params: Mapping[str, Any]) -> tuple[SlashReceipt, str]:
    try:
        target = parse_address(str(params["target"]))
        receipt = SlashReceipt(
            target,
            bytes.fromhex(str(params["evidence_hash"])),
            int(params["tokens"]),
            bytes.fromhex(str(params["signature"])),
        )
        request_id = str(params.get("request_id", ""))[:256]
    except (KeyError, TypeError, ValueError, AddressError, MessageError) as exc:
        raise ReceiptRefused(f"malformed slash receipt: {exc}") from exc
    return receipt, request_id


@dataclass(frozen=True, slots=True)
class DisputeResult:
    target: str
    evidence_hash: str
    disputed: bool  # False: no receipt for the pending claim


class HeldReceipts:
    """The worker's receipts, by (worker contract, evidence hash); 0600 in a 0700 home.

    One short connection per operation (nothing stays open); WAL without a disk sync per receipt:
    a power cut may lose the last receipts, never the file."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / STORE_NAME
        self._lock = threading.Lock()
        self._added = 0

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            fresh = not self.path.exists()
            if fresh:
                private_dir(self.home)
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                if fresh:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(_SCHEMA)
                db.execute("PRAGMA synchronous=NORMAL")
                yield db
            finally:
                db.close()

    def hold(self, params: Mapping[str, Any], *, signing_key: bytes) -> SlashReceipt:
        """Keep a receipt after checking it under the proxy's announced signing key (ReceiptRefused)."""
        receipt, request_id = _parse(params)
        try:
            receipt.verify(signing_key)
        except SignatureError as exc:
            raise ReceiptRefused(str(exc)) from exc
        row = (
            normalize_address(receipt.target.to_str()),
            receipt.evidence_hash.hex(),
            receipt.tokens,
            receipt.signature.hex(),
            signing_key.hex(),
            request_id,
            time.time(),
        )
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._added += 1
            if self._added % 1000 == 0:
                db.execute(
                    "DELETE FROM receipts WHERE rowid NOT IN"
                    " (SELECT rowid FROM receipts ORDER BY received_at DESC LIMIT ?)",
                    (KEEP,),
                )
        return receipt

    def on_notice(self, conn: net.NodeConnection, params: Mapping[str, Any]) -> SlashReceipt | None:
        """A receipt the proxy pushed: kept when signed by the key its hello announced, else dropped."""
        chain = conn.peer.info.get("chain")
        try:
            key = bytes.fromhex(str(chain.get("signing_key", ""))) if isinstance(chain, Mapping) else b""
            if len(key) != 32:
                raise ReceiptRefused("the proxy announced no chain signing key")
            return self.hold(params, signing_key=key)
        except (ReceiptRefused, ValueError) as exc:
            log.warning("dropped a slash receipt from %s: %s", conn.peer.address, exc)
            return None

    def find(self, target: str, evidence_hash: bytes) -> SlashReceipt | None:
        if not self.path.exists():
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT target, evidence_hash, tokens, signature FROM receipts WHERE target=? AND evidence_hash=?",
                (normalize_address(target), evidence_hash.hex()),
            ).fetchone()
        if row is None:
            return None
        return SlashReceipt(parse_address(row[0]), bytes.fromhex(row[1]), int(row[2]), bytes.fromhex(row[3]))

    def targets(self) -> list[str]:
        if not self.path.exists():
            return []
        with self._db() as db:
            return [t for (t,) in db.execute("SELECT DISTINCT target FROM receipts ORDER BY target")]

    def held(self) -> list[tuple[str, str, str]]:
        """(worker contract, evidence hash, request id) of every receipt held, oldest first."""
        if not self.path.exists():
            return []
        with self._db() as db:
            found = db.execute("SELECT target, evidence_hash, request_id FROM receipts ORDER BY received_at")
            return [(str(t), str(e), str(r)) for t, e, r in found]

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])


async def dispute_pending(
    chain: Chain, owner: WalletClient, held: HeldReceipts, *, targets: list[str] | None = None
) -> list[DisputeResult]:
    """For each worker contract (those we hold receipts for, unless given) with a pending slash
    claim, post the dispute when we hold the proxy's receipt for the claimed evidence."""
    results = []
    for target in targets if targets is not None else held.targets():
        address = parse_address(target)
        try:
            state = await read_worker_state(chain, address)
        except AccountNotFound:
            continue
        pending = state.pending_slash
        if pending is None:
            continue
        receipt = held.find(target, pending.evidence_hash)
        if receipt is not None:
            await dispute_slash(owner, address, receipt)
        results.append(
            DisputeResult(normalize_address(target), pending.evidence_hash.hex(), receipt is not None)
        )
    return results
