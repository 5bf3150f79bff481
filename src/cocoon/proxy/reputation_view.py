"""The operator dashboard's view of the workers' lasting reputation (the ``reputation`` part of ``/stats``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cocoon.node.dashboard import Row, Table, cell

__all__ = ["evidence_table", "reputation_table"]


def _ms(percentiles: Mapping[str, Any] | None, key: str) -> object:
    return (percentiles or {}).get(key)


def reputation_table(stats: Mapping[str, Any]) -> Table:
    """One row per worker this proxy remembers (connected or not), as published signed to clients."""
    rows = []
    for w in stats.get("reputation", {}).get("workers", []):
        spot = w.get("spot_checks") or {}
        failed = spot.get("failed", 0)
        rows.append(
            Row(
                (
                    cell(w["worker_id"], "hash"),
                    cell(bool(w.get("connected"))),
                    cell(w.get("success_permille"), "number"),
                    cell(_ms(w.get("ttft_ms"), "p50"), "number"),
                    cell(_ms(w.get("ttft_ms"), "p99"), "number"),
                    cell(_ms(w.get("duration_ms"), "p90"), "number"),
                    cell(w.get("uptime_permille"), "number"),
                    cell(spot.get("passed", 0), "number"),
                    cell(failed, "bad" if failed else "number"),
                    cell(w.get("usage_mismatches", 0), "number"),
                    cell(w.get("evidence", 0), "bad" if w.get("evidence") else "number"),
                    cell(w.get("suspended_until"), "time"),
                ),
                key=w["worker_id"],
            )
        )
    columns = (
        "worker", "connected", "success ‰", "TTFT p50 ms", "TTFT p99 ms", "duration p90 ms", "uptime ‰",
        "spot checks passed", "spot checks failed", "usage mismatches", "evidence", "suspended until",
    )  # fmt: skip
    return Table(
        "reputation", "Reputation (lasting, published signed)", columns, tuple(rows), empty="no worker known"
    )


def evidence_table(stats: Mapping[str, Any]) -> Table:
    """The newest signed evidence of misbehaviour and where its slash stands."""
    rows = [
        Row(
            (
                cell(e["evidence_id"], "hash"),
                cell(e.get("worker_id"), "hash"),
                cell(e.get("kind"), "bad"),
                cell(e.get("request_id"), "hash"),
                cell(e.get("slash_state")),
                cell(e.get("slash_amount_nano"), "ton"),
                cell(e.get("slash_deadline"), "time"),
                cell(e.get("at"), "time"),
            ),
            key=e["evidence_id"],
        )
        for e in stats.get("reputation", {}).get("evidence", [])
    ]
    columns = ("evidence", "worker", "kind", "request", "slash", "slash amount", "dispute window ends", "at")
    return Table("evidence", "Evidence of misbehaviour (signed)", columns, tuple(rows), empty="none recorded")
