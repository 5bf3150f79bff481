"""A connected worker's ``worker_update`` notices, applied to the registry: a new price coefficient
or capacity takes effect for the next request, a worker that pauses (drains) gets no new requests
until it resumes. A worker's own pause never lifts an operator's disable (dashboard), and a bad
notice changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cocoon.node.worker_update import parse_worker_update
from cocoon.proxy.selection import WorkerRegistry

__all__ = ["WorkerUpdates"]


class WorkerUpdates:
    """Which workers paused themselves, and the rule that applies a notice."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self.registry = registry
        self.paused: set[str] = set()  # disabled by their own notice, not by the operator

    def _enabled(self, worker_id: str) -> bool:
        views = self.registry.statistics().per_worker
        return next((v.enabled for v in views if v.record.worker_id == worker_id), False)

    def apply(self, worker_id: str, params: Mapping[str, Any]) -> str:
        """Apply one notice from ``worker_id``'s link; returns what changed, in words. Raises
        ``ValueError`` (nothing applied) for a malformed notice or a worker not connected."""
        update = parse_worker_update(params)
        record = self.registry.get(worker_id)
        if record is None:
            raise ValueError(f"worker {worker_id} is not connected")
        enabled = self._enabled(worker_id)
        changed = replace(record, coefficient=update.coefficient, max_active=update.max_active_requests)
        words = []
        if changed != record:
            self.registry.add(changed)  # re-registered: its reputation stays
            self.registry.set_enabled(worker_id, enabled)  # add() would lift a disable
            words.append(f"coefficient {update.coefficient}, capacity {update.max_active_requests}")
        if not update.accepting and enabled:
            self.paused.add(worker_id)
            self.registry.set_enabled(worker_id, False)
            words.append("paused by the worker")
        elif update.accepting and worker_id in self.paused:
            self.paused.discard(worker_id)
            self.registry.set_enabled(worker_id, True)
            words.append("resumed by the worker")
        return "; ".join(words) or "no change"

    def forget(self, worker_id: str) -> None:
        """The worker's link closed: a reconnect announces afresh (and repeats a pause)."""
        self.paused.discard(worker_id)
