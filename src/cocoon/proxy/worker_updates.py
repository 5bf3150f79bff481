"""A connected worker's ``worker_update`` notices, applied to the registry: a new price coefficient
or capacity takes effect for the next request, a worker that pauses (drains) gets no new requests
until it resumes. Two wills are kept apart, the worker's (pause / resume) and the operator's
(dashboard disable / enable): a worker gets requests only when neither says no, so a worker's own
resume never lifts an operator's disable. A bad notice changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cocoon.node.worker_update import parse_worker_update
from cocoon.proxy.selection import WorkerRegistry

__all__ = ["WorkerUpdates"]


class WorkerUpdates:
    """Who switched which connected worker off, and the rule that applies a notice."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self.registry = registry
        self.paused: set[str] = set()  # by their own notice
        self.operator_disabled: set[str] = set()  # by the dashboard's disable

    def _apply(self, worker_id: str) -> None:
        allowed = worker_id not in self.paused and worker_id not in self.operator_disabled
        self.registry.set_enabled(worker_id, allowed)

    def set_by_operator(self, worker_id: str, enabled: bool) -> None:
        """The operator's disable / enable; ``ValueError`` for a worker not connected."""
        if self.registry.get(worker_id) is None:
            raise ValueError(f"no connected worker {worker_id!r}")
        if enabled:
            self.operator_disabled.discard(worker_id)
        else:
            self.operator_disabled.add(worker_id)
        self._apply(worker_id)

    def apply(self, worker_id: str, params: Mapping[str, Any]) -> str:
        """Apply one notice from ``worker_id``'s link; returns what changed, in words. Raises
        ``ValueError`` (nothing applied) for a malformed notice or a worker not connected."""
        update = parse_worker_update(params)
        record = self.registry.get(worker_id)
        if record is None:
            raise ValueError(f"worker {worker_id} is not connected")
        words = []
        changed = replace(record, coefficient=update.coefficient, max_active=update.max_active_requests)
        if changed != record:
            self.registry.add(changed)  # re-registered: its reputation stays
            words.append(f"coefficient {update.coefficient}, capacity {update.max_active_requests}")
        if update.accepting == (worker_id in self.paused):
            words.append("resumed by the worker" if update.accepting else "paused by the worker")
        if update.accepting:
            self.paused.discard(worker_id)
        else:
            self.paused.add(worker_id)
        self._apply(worker_id)  # also after add(), which would lift a disable
        return "; ".join(words) or "no change"

    def forget(self, worker_id: str) -> None:
        """The worker's link closed: a reconnect announces afresh (and repeats a pause)."""
        self.paused.discard(worker_id)
        self.operator_disabled.discard(worker_id)
