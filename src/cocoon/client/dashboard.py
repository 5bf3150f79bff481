"""The client's page of the operator dashboard: requests and spend over time, the proxy links, the
daily budget and the last receipts. Read-only: the money endpoints stay behind the admin token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cocoon.client.ports import ApiDeps
from cocoon.node.dashboard import (
    ChartSpec,
    DashboardSettings,
    Row,
    SeriesSpec,
    Snapshot,
    Table,
    cell,
    dashboard_app,
)
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy

__all__ = ["CLIENT_CHARTS", "client_dashboard", "client_snapshot"]

_TON = 1e-9
CLIENT_CHARTS = (
    ChartSpec(
        "requests",
        "Requests",
        "per s",
        (SeriesSpec("succeeded", "succeeded", rate=True), SeriesSpec("failed", "failed", rate=True)),
    ),
    ChartSpec("spend", "Spend (cumulative)", "TON", (SeriesSpec("spent_nano", "spent", scale=_TON),)),
    ChartSpec(
        "spend-rate", "Spend rate", "nanoTON per s", (SeriesSpec("spent_nano", "spending", rate=True),)
    ),
)


def _receipt_row(r: Mapping[str, Any]) -> Row:
    usage = r.get("usage", {})
    return Row(
        (
            cell(r.get("time"), "time"),
            cell(usage.get("prompt_tokens"), "number"),
            cell(usage.get("completion_tokens"), "number"),
            cell(r.get("adjusted_tokens"), "number"),
            cell(r.get("cost_nano", 0), "ton"),
            cell(r.get("delivered_sha256"), "hash"),
            cell(r.get("sealed") is True),  # end to end, past the proxy
        )
    )


def client_snapshot(stats: Mapping[str, Any], receipts: Iterable[Mapping[str, Any]]) -> Snapshot:
    """The page for the client's statistics and recent receipts (pure)."""
    budget = stats.get("budget_left_nano")
    facts = [
        ("state", cell(stats.get("state"), "ok" if stats.get("state") == "running" else "warn")),
        ("requests", cell(stats.get("requests", 0), "number")),
        ("succeeded / failed", cell(f"{stats.get('succeeded', 0)} / {stats.get('failed', 0)}")),
        ("spent", cell(stats.get("spent_nano", 0), "ton")),
        ("daily budget left", cell(budget, "ton") if budget is not None else cell("no limit")),
    ]
    proxies = Table(
        "proxies",
        "Proxies",
        ("proxy", "link", "clock skew s"),
        tuple(
            Row(
                (
                    cell(p["address"]),
                    cell("connected" if p.get("connected") else "reconnecting", "ok" if p.get("connected") else "warn"),
                    cell(p.get("clock_skew_s"), "number"),
                )
            )
            for p in stats.get("proxies", [])
        ),
    )  # fmt: skip
    recent = list(receipts)[-20:][::-1]
    receipts_table = Table(
        "receipts",
        "Last answers (newest first)",
        (
            "at",
            "prompt tokens",
            "completion tokens",
            "adjusted tokens",
            "cost",
            "sha-256 of what the app got",
            "sealed",
        ),
        tuple(_receipt_row(r) for r in recent),
        empty="no answer yet",
    )
    metrics = {k: stats[k] for k in ("requests", "succeeded", "failed", "spent_nano") if k in stats}
    return Snapshot(title="cocoon client", facts=facts, metrics=metrics, tables=[proxies, receipts_table])


def client_dashboard(deps: ApiDeps) -> LocalHttpGuard:
    """The client's dashboard app (read-only), behind the same Host/Origin policy as its API."""

    async def snapshot() -> Snapshot:
        return client_snapshot(deps.proxy.statistics(), deps.spending.receipts)

    policy = LocalHttpPolicy.of(deps.config.allowed_hosts, deps.config.allowed_origins)
    return dashboard_app(snapshot, DashboardSettings(role="client", charts=CLIENT_CHARTS, policy=policy))
