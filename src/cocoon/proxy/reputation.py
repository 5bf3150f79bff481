"""Reputation that lasts and can be checked: per-worker statistics kept across restarts, published signed.

:class:`ReputationBook` keeps, per stable worker id, what :class:`~cocoon.proxy.selection.WorkerRegistry`
does not: recent latencies of that worker (for its own percentiles), the time it was connected (uptime),
spot-check results and how much evidence was recorded against it. :class:`TrackedRegistry` is the
registry the proxy uses: the same selection, with each connect, disconnect, first byte and finish also
told to the book (pure logic, no I/O; times are passed in, seconds since the epoch).

Lasting: :meth:`ReputationBook.export` joins the registry's own statistics
(:meth:`~cocoon.proxy.selection.WorkerRegistry.export_reputation`: success/failure counts, EWMAs,
suspension and backoff level) with the book's, one JSON record per worker, which the proxy writes to
its billing store (``worker_reputation``) every ``save_interval_s`` while something changed and at stop;
:meth:`ReputationBook.restore` puts both back at start, before any worker connects. So a restart keeps a
worker's record and its suspension: a worker cannot clear a bad record by waiting for a proxy restart.

Published: :meth:`ReputationBook.stats_body` is the statistics clients and the dashboard read, and
:func:`signed_worker_stats` signs it with the proxy's attested key (:mod:`cocoon.node.trustdocs`). Every
number is an integer (milliseconds, per mille), so the signed JSON is the same in any language.
Per worker: requests ok/failed and the success rate (lifetime counts), TTFT and duration p50/p90/p99
over its last :data:`SAMPLES` answers, uptime (connected time / time since first seen by this proxy),
spot checks passed/failed, usage mismatches, suspensions, the end of a current suspension, evidence.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.node.trustdocs import WORKER_STATS, sign_document
from cocoon.proxy.selection import DEFAULT_POLICY, SelectionPolicy, WorkerRecord, WorkerRegistry, percentiles

__all__ = ["SAMPLES", "ReputationBook", "TrackedRegistry", "WorkerBook", "signed_worker_stats"]

SAMPLES = 256  # latencies kept per worker for its percentiles
STATS_VERSION = 1


@dataclass(slots=True)
class WorkerBook:
    """What the book knows of one worker beyond the registry's statistics."""

    first_seen: float
    model: str = ""
    model_hash: str = ""
    connected_s: float = 0.0  # closed connection intervals
    connected_since: float | None = None
    ttft: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    duration: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    spot_passed: int = 0
    spot_failed: int = 0
    last_spot_failure: float | None = None
    evidence: int = 0

    def uptime_s(self, now: float) -> float:
        live = max(now - self.connected_since, 0.0) if self.connected_since is not None else 0.0
        return self.connected_s + live

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "model": self.model,
            "model_hash": self.model_hash,
            "connected_s": self.connected_s,
            "ttft": list(self.ttft),
            "duration": list(self.duration),
            "spot_passed": self.spot_passed,
            "spot_failed": self.spot_failed,
            "last_spot_failure": self.last_spot_failure,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: object) -> WorkerBook | None:
        """A book from :meth:`to_json` (a connection open at the last save counts until that save)."""
        if not isinstance(data, Mapping):
            return None
        try:
            book = cls(
                first_seen=_number(data["first_seen"]),
                model=str(data.get("model", "")),
                model_hash=str(data.get("model_hash", "")),
                connected_s=_number(data["connected_s"]),
                spot_passed=_count(data["spot_passed"]),
                spot_failed=_count(data["spot_failed"]),
                evidence=_count(data["evidence"]),
            )
            last = data.get("last_spot_failure")
            book.last_spot_failure = None if last is None else _number(last)
            book.ttft.extend(_number(x) for x in _samples(data.get("ttft")))
            book.duration.extend(_number(x) for x in _samples(data.get("duration")))
        except (KeyError, TypeError, ValueError):
            return None
        return book


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a non-negative number: {value!r}")
    return float(value)


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _samples(value: object) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError("samples must be a list")
    return value[-SAMPLES:]


def _ms_percentiles(samples: deque[float]) -> dict[str, int]:
    return {name: round(1000 * value) for name, value in percentiles(samples).items()}


class ReputationBook:
    """Per-worker lasting statistics beside a registry (see the module docstring)."""

    def __init__(self) -> None:
        self._books: dict[str, WorkerBook] = {}
        self.dirty = False  # something changed since the last export

    def book(self, worker_id: str, now: float) -> WorkerBook:
        found = self._books.get(worker_id)
        if found is None:
            found = self._books[worker_id] = WorkerBook(first_seen=now)
        return found

    def get(self, worker_id: str) -> WorkerBook | None:
        return self._books.get(worker_id)

    def connected(self, record: WorkerRecord, now: float) -> None:
        book = self.book(record.worker_id, now)
        if book.connected_since is None:
            book.connected_since = now
        book.model, book.model_hash = record.model, record.model_hash
        self.dirty = True

    def disconnected(self, worker_id: str, now: float) -> None:
        book = self._books.get(worker_id)
        if book is not None and book.connected_since is not None:
            book.connected_s += max(now - book.connected_since, 0.0)
            book.connected_since = None
            self.dirty = True

    def first_byte(self, worker_id: str, ttft: float, now: float) -> None:
        if math.isfinite(ttft) and ttft >= 0:
            self.book(worker_id, now).ttft.append(ttft)
            self.dirty = True

    def finished(self, worker_id: str, ok: bool, duration: float, now: float) -> None:
        book = self.book(worker_id, now)
        if ok and math.isfinite(duration) and duration > 0:
            book.duration.append(duration)
        self.dirty = True

    def spot_check(self, worker_id: str, passed: bool, now: float) -> None:
        book = self.book(worker_id, now)
        if passed:
            book.spot_passed += 1
        else:
            book.spot_failed += 1
            book.last_spot_failure = now
        self.dirty = True

    def evidence_recorded(self, worker_id: str, now: float) -> None:
        self.book(worker_id, now).evidence += 1
        self.dirty = True

    # -- lasting ---------------------------------------------------------------------------------

    def export(self, registry: WorkerRegistry, now: float) -> dict[str, dict[str, Any]]:
        """One record per worker: the registry's statistics and the book's (connections counted up to now)."""
        stats = registry.export_reputation()
        out: dict[str, dict[str, Any]] = {}
        for worker_id in sorted(set(stats) | set(self._books)):
            book = self._books.get(worker_id)
            saved = None
            if book is not None:
                saved = book.to_json()
                saved["connected_s"] = book.uptime_s(now)
            out[worker_id] = {"registry": stats.get(worker_id), "book": saved}
        self.dirty = False
        return out

    def restore(self, registry: WorkerRegistry, records: Mapping[str, object]) -> int:
        """Put back what :meth:`export` saved; malformed records are skipped. Returns workers restored."""
        restored: set[str] = set()
        valid = {w: r for w, r in records.items() if isinstance(w, str) and isinstance(r, Mapping)}
        stats = {w: r["registry"] for w, r in valid.items() if isinstance(r.get("registry"), Mapping)}
        if stats:
            registry.restore_reputation(stats)
            known = registry.export_reputation()
            restored.update(w for w in stats if w in known)
        for worker_id, record in valid.items():
            book = WorkerBook.from_json(record.get("book"))
            if book is not None and worker_id not in self._books:
                self._books[worker_id] = book
                restored.add(worker_id)
        return len(restored)

    # -- published -------------------------------------------------------------------------------

    def stats_body(self, registry: WorkerRegistry, now: float, *, seqno: int | None = None) -> dict[str, Any]:
        """The published statistics (integers only): every worker this proxy knows, by worker id."""
        connected = {r.worker_id for r in registry.records()}
        exported = registry.export_reputation()
        workers = []
        for worker_id in sorted(set(exported) | set(self._books)):
            workers.append(
                self._worker_stats(worker_id, exported.get(worker_id), worker_id in connected, now)
            )
        return {"v": STATS_VERSION, "generated_at": int(now), "seqno": seqno, "workers": workers}

    def _worker_stats(
        self, worker_id: str, live: Mapping[str, Any] | None, connected: bool, now: float
    ) -> dict[str, Any]:
        book = self._books.get(worker_id) or WorkerBook(first_seen=now)
        live = live or {}
        ok, failed = int(live.get("total_ok") or 0), int(live.get("total_failed") or 0)
        observed = max(now - book.first_seen, 0.0)
        until = live.get("suspended_until")
        return {
            "worker_id": worker_id,
            "model": book.model,
            "model_hash": book.model_hash,
            "connected": connected,
            "requests_ok": ok,
            "requests_failed": failed,
            "success_permille": round(1000 * ok / (ok + failed)) if ok + failed else None,
            "ttft_ms": _ms_percentiles(book.ttft),
            "duration_ms": _ms_percentiles(book.duration),
            "uptime_permille": round(1000 * min(book.uptime_s(now) / observed, 1.0))
            if observed > 0
            else None,
            "observed_s": int(observed),
            "spot_checks": {"passed": book.spot_passed, "failed": book.spot_failed},
            "last_spot_failure": None if book.last_spot_failure is None else int(book.last_spot_failure),
            "usage_mismatches": int(live.get("mismatches") or 0),
            "suspensions": int(live.get("suspensions") or 0),
            "suspended_until": int(until) if isinstance(until, int | float) and until > now else None,
            "evidence": book.evidence,
        }


def signed_worker_stats(
    key: ed25519.Ed25519PrivateKey,
    book: ReputationBook,
    registry: WorkerRegistry,
    now: float,
    *,
    seqno: int | None = None,
) -> dict[str, Any]:
    """The statistics document signed by the proxy's attested key (kind ``worker-stats``)."""
    return sign_document(key, WORKER_STATS, book.stats_body(registry, now, seqno=seqno))


class TrackedRegistry(WorkerRegistry):
    """The selection registry, telling a :class:`ReputationBook` of every connect, disconnect and answer."""

    def __init__(
        self,
        book: ReputationBook,
        policy: SelectionPolicy = DEFAULT_POLICY,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(policy)
        self.book = book
        self._clock = clock  # disconnects and first bytes carry no time of their own
        self._blamed: deque[str] = deque(maxlen=1024)  # usage mismatches not yet taken as evidence

    def add(self, record: WorkerRecord) -> None:
        super().add(record)
        self.book.connected(record, record.connected_at)

    def remove(self, worker_id: str) -> None:
        if self.get(worker_id) is not None:
            self.book.disconnected(worker_id, self._clock())
        super().remove(worker_id)

    def first_byte(self, worker_id: str, ttft: float) -> None:
        super().first_byte(worker_id, ttft)
        self.book.first_byte(worker_id, ttft, self._clock())

    def finished(
        self, worker_id: str, ok: bool, tokens: int, duration: float, now: float, **extra: Any
    ) -> None:
        super().finished(worker_id, ok, tokens, duration, now, **extra)
        self.book.finished(worker_id, ok, duration, now)

    def usage_mismatch(self, worker_id: str, now: float | None = None) -> None:
        super().usage_mismatch(worker_id, now)
        self._blamed.append(worker_id)

    def take_mismatch(self, worker_id: str) -> bool:
        """True (once) when the relay just blamed ``worker_id`` for an over-claim: the attempt judged the
        whole answer relayed (an app that left mid-answer blames nobody), so the capped bill is evidence."""
        try:
            self._blamed.remove(worker_id)
        except ValueError:
            return False
        return True
