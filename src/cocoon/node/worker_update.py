"""The ``worker_update`` notice: a running worker tells its proxies its new price coefficient,
capacity, and whether it takes new requests (the reference's new-coefficient and enable/disable
messages in one). Sans-IO: the name and a strict parser both sides use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_UPDATE_COEFFICIENT", "WORKER_UPDATE", "WorkerUpdate", "parse_worker_update"]

WORKER_UPDATE = "worker_update"
MAX_UPDATE_COEFFICIENT = 999_999_999  # per mille, as the reference and the announce accept
_MAX_ACTIVE = 1_000_000


@dataclass(frozen=True, slots=True)
class WorkerUpdate:
    coefficient: int
    max_active_requests: int
    accepting: bool

    def to_params(self) -> dict[str, Any]:
        return {
            "coefficient": self.coefficient,
            "max_active_requests": self.max_active_requests,
            "accepting": self.accepting,
        }


def _int(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"worker_update: {name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def parse_worker_update(params: Mapping[str, Any]) -> WorkerUpdate:
    """The notice's fields, all checked; ``ValueError`` on anything else (nothing is applied)."""
    if not isinstance(params, Mapping) or set(params) != {"coefficient", "max_active_requests", "accepting"}:
        raise ValueError("worker_update: exactly coefficient, max_active_requests and accepting")
    accepting = params["accepting"]
    if not isinstance(accepting, bool):
        raise ValueError("worker_update: accepting must be true or false")
    return WorkerUpdate(
        coefficient=_int(params, "coefficient", 0, MAX_UPDATE_COEFFICIENT),
        max_active_requests=_int(params, "max_active_requests", 1, _MAX_ACTIVE),
        accepting=accepting,
    )
