"""The proxy's page of the operator dashboard: requests, latency, tokens and money over time, the
workers (load, reputation, suspensions, attestation freshness), their market standing (attested
hardware, the service classes their measured performance admits them to, TTFT, decode speed,
bandwidth and uptime as the proxy measured them), clients and chain settlement.

It reads the ``GET /stats`` document (so the page and ``cocoon proxy status`` agree) and acts on
the worker registry: disabling a worker drains it (running requests finish, none are sent to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cocoon.node.dashboard import (
    Action,
    ChartSpec,
    DashboardSettings,
    Row,
    SeriesSpec,
    Snapshot,
    Table,
    cell,
    dashboard_app,
    write_operator_token,
)
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy
from cocoon.proxy.reputation_view import evidence_table, reputation_table
from cocoon.proxy.selection import WorkerRegistry
from cocoon.proxy.worker_updates import WorkerUpdates

__all__ = ["PROXY_CHARTS", "ProxyDashboardSource", "proxy_dashboard", "proxy_snapshot"]

_TON = 1e-9
PROXY_CHARTS = (
    ChartSpec(
        "requests",
        "Requests",
        "per s",
        (
            SeriesSpec("requests.succeeded", "succeeded", rate=True),
            SeriesSpec("requests.failed", "failed", rate=True),
            SeriesSpec("requests.rejected", "rejected", rate=True),
            SeriesSpec("requests.retried", "retried", rate=True),
        ),
    ),
    ChartSpec(
        "latency",
        "Latency, recent window",
        "ms",
        (
            SeriesSpec("ttft.p50", "TTFT p50", scale=1000),
            SeriesSpec("ttft.p99", "TTFT p99", scale=1000),
            SeriesSpec("duration.p50", "duration p50", scale=1000),
            SeriesSpec("duration.p99", "duration p99", scale=1000),
        ),
    ),
    ChartSpec(
        "tokens",
        "Tokens",
        "per s",
        (
            SeriesSpec("workers.completion_tokens", "completion", rate=True),
            SeriesSpec("billing.adjusted_tokens", "billed (adjusted)", rate=True),
        ),
    ),
    ChartSpec(
        "money",
        "Earnings (cumulative)",
        "TON",
        (
            SeriesSpec("billing.revenue_nano", "billed to clients", scale=_TON),
            SeriesSpec("billing.worker_earnings_nano", "earned by workers", scale=_TON),
            SeriesSpec("billing.proxy_fees_nano", "proxy fees", scale=_TON),
        ),
    ),
    ChartSpec(
        "load",
        "Load",
        "requests",
        (
            SeriesSpec("workers.running", "running"),
            SeriesSpec("workers.capacity", "slots of connected workers"),
        ),
    ),
)


class ProxyDashboardSource(Protocol):
    """What the page reads from the proxy service."""

    draining: bool  # the operator's drain: new client requests refused, running ones finish
    worker_updates: WorkerUpdates  # the operator's disable / enable, kept apart from workers' pauses

    @property
    def registry(self) -> WorkerRegistry: ...

    def statistics(self) -> dict[str, Any]: ...


def _metrics(stats: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in stats.get("requests", {}).items():
        out[f"requests.{key}"] = value
    for key, value in stats.get("billing", {}).items():
        out[f"billing.{key}"] = value
    workers = stats.get("workers", {})
    for key in ("running", "capacity", "completion_tokens", "count", "suspended"):
        if key in workers:
            out[f"workers.{key}"] = workers[key]
    latency = workers.get("latency", {})
    for kind, name in (("ttft_s", "ttft"), ("duration_s", "duration")):
        for quantile, value in latency.get(kind, {}).items():
            out[f"{name}.{quantile}"] = value
    out["clients_connected"] = stats.get("clients_connected", 0)
    return {k: v for k, v in out.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _worker_state(w: Mapping[str, Any]) -> Any:
    if not w.get("enabled", True):
        return cell("disabled", "warn")
    if w.get("suspended"):
        return cell("suspended", "bad")
    if not w.get("attested", True):
        return cell("attestation stale", "bad")
    if w.get("probation"):
        return cell("probation", "warn")
    return cell("serving", "ok")


def _workers_table(stats: Mapping[str, Any]) -> Table:
    rows = []
    for w in stats.get("workers", {}).get("list", []):
        ttft = w.get("ttft_s")
        rows.append(
            Row(
                (
                    cell(w["worker_id"], "hash"),
                    cell(w.get("model")),
                    _worker_state(w),
                    cell(f"{w.get('running', 0)} / {w.get('capacity', 0)}"),
                    cell(None if ttft is None else round(ttft * 1000, 1), "number"),
                    cell(round(w.get("failure_rate", 0.0), 3), "number"),
                    cell(w.get("score"), "number"),
                    cell(w.get("requests_ok", 0), "number"),
                    cell(w.get("requests_failed", 0), "number"),
                    cell(w.get("suspensions", 0), "number"),
                    cell(w.get("suspended_until") if w.get("suspended") else None, "time"),
                    cell(w.get("attested_at"), "time"),
                    cell(w.get("image_hash"), "hash"),
                ),
                key=w["worker_id"],
                actions=("disable",) if w.get("enabled", True) else ("enable",),
            )
        )
    columns = (
        "worker", "model", "state", "running / slots", "TTFT ms", "failure rate", "score (lower wins)",
        "ok", "failed", "suspensions", "suspended until", "attested at", "image hash",
    )  # fmt: skip
    return Table("workers", "Workers", columns, tuple(rows), empty="no worker connected")


def _gpus(w: Mapping[str, Any]) -> str:
    if not w.get("gpu_count"):
        return "none"
    memory = w.get("gpu_memory_mib", 0) / 1024
    return f"{w['gpu_count']} × {w.get('gpu_model') or '?'} ({memory:.0f} GiB)"


def _market_table(stats: Mapping[str, Any]) -> Table:
    """Each worker's attested hardware, class admission and what the proxy measured of it."""
    rows = []
    for w in stats.get("workers", {}).get("list", []):
        bandwidth = w.get("bandwidth_bytes_per_s")
        rows.append(
            Row(
                (
                    cell(w["worker_id"], "hash"),
                    cell(w.get("hardware")),
                    cell(_gpus(w)),
                    cell(bool(w.get("confidential_gpu"))),
                    cell(", ".join(w.get("service_classes", [])) or "none"),
                    cell(w.get("observations", 0), "number"),
                    cell(w.get("ttft_p90_ms"), "number"),
                    cell(w.get("decode_p10_tokens_per_s"), "number"),
                    cell(w.get("success_rate"), "number"),
                    cell(None if bandwidth is None else round(bandwidth / 1024, 1), "number"),
                    cell(w.get("uptime_s"), "number"),
                    cell(w.get("uptime_ratio"), "number"),
                ),
                key=w["worker_id"],
            )
        )
    columns = (
        "worker", "hardware (attested)", "GPUs", "confidential GPU", "classes admitted", "measured answers",
        "TTFT p90 ms", "decode p10 tok/s", "success rate", "bandwidth KiB/s", "uptime s", "uptime share",
    )  # fmt: skip
    return Table(
        "market", "Market: hardware and service classes", columns, tuple(rows), empty="no worker connected"
    )


def _money_tables(stats: Mapping[str, Any]) -> list[Table]:
    earnings = [
        Row(
            (
                cell(e["worker"], "hash"),
                cell(e.get("tokens", 0), "number"),
                cell(e.get("earnings_nano", 0), "ton"),
                cell(e.get("paid_tokens", 0), "number"),
                cell(e.get("committed_tokens", 0), "number"),
                cell(e.get("contract") or None, "hash"),
            )
        )
        for e in stats.get("earnings", [])
    ]
    clients = [
        Row(
            (
                cell(c["client"], "hash"),
                cell(c.get("requests", 0), "number"),
                cell(c.get("tokens", 0), "number"),
                cell(c.get("cost_nano", 0), "ton"),
                cell(c.get("reserved_nano", 0), "ton"),
                cell(c.get("available_nano", 0), "ton"),
                cell(c.get("charged_tokens", 0), "number"),
            )
        )
        for c in stats.get("clients", [])
    ]
    return [
        Table(
            "earnings",
            "Worker earnings",
            ("payee", "adjusted tokens", "earned", "paid tokens", "committed tokens", "contract"),
            tuple(earnings),
        ),
        Table(
            "clients",
            "Clients",
            ("client", "requests", "tokens", "billed", "reserved", "available", "charged on chain"),
            tuple(clients),
        ),
    ]


def _chain_table(stats: Mapping[str, Any]) -> Table:
    billing = stats.get("billing", {})
    chain = stats.get("chain")
    rows: list[tuple[str, Any]] = [
        ("ledger state seqno", cell(billing.get("seqno"), "number")),
        ("last seqno committed on chain", cell(billing.get("last_committed_seqno"), "number")),
        ("session hash", cell(billing.get("session_hash"), "hash")),
    ]
    if chain is None:
        rows.append(("chain", cell("none (test credit, no settlement)", "warn")))
    else:
        rows += [
            ("root contract", cell(chain.get("root"), "hash")),
            ("proxy contract", cell(chain.get("proxy_contract") or None, "hash")),
            ("sync ticks", cell(chain.get("ticks"), "number")),
            ("sync errors", cell(chain.get("errors"), "number")),
            ("last error", cell(chain.get("last_error") or None, "bad")),
        ]
        for key in ("commits_posted", "commits_seen", "charges_posted", "payouts_posted", "refunds_granted"):
            rows.append((key.replace("_", " "), cell(chain.get(key), "number")))
    table_rows = tuple(Row((cell(label), value)) for label, value in rows)
    return Table("chain", "Chain settlement", ("", ""), table_rows)


def proxy_snapshot(stats: Mapping[str, Any]) -> Snapshot:
    """The page for one ``/stats`` document (pure: tested without a proxy)."""
    workers = stats.get("workers", {})
    billing = stats.get("billing", {})
    requests = stats.get("requests", {})
    facts = [
        ("state", cell(stats.get("state"), "ok" if stats.get("state") == "running" else "warn")),
        ("workers", cell(f"{workers.get('count', 0)} ({workers.get('suspended', 0)} suspended)")),
        ("clients connected", cell(stats.get("clients_connected", 0), "number")),
        ("accepting requests", _accepting(stats.get("accepting_requests", True))),
        ("requests", cell(requests.get("requests", 0), "number")),
        ("succeeded / failed", cell(f"{requests.get('succeeded', 0)} / {requests.get('failed', 0)}")),
        ("billed to clients", cell(billing.get("revenue_nano", 0), "ton")),
        ("earned by workers", cell(billing.get("worker_earnings_nano", 0), "ton")),
        ("held by running requests", cell(billing.get("reserved_nano", 0), "ton")),
        ("image hash", cell(stats.get("image_hash") or None, "hash")),
    ]
    models = Table(
        "models",
        "Models",
        ("model", "workers", "capabilities", "completion price / 1M tokens"),
        tuple(
            Row(
                (
                    cell(m["id"]),
                    cell(m.get("workers", 0), "number"),
                    cell(", ".join(m.get("capabilities", []))),
                    cell(m.get("price_per_1m", {}).get("completion"), "ton"),
                )
            )
            for m in stats.get("models", [])
        ),
    )
    tables = [
        _workers_table(stats), _market_table(stats), reputation_table(stats), evidence_table(stats), models,
        *_money_tables(stats),
        _chain_table(stats),
    ]  # fmt: skip
    return Snapshot(title="cocoon proxy", facts=facts, metrics=_metrics(stats), tables=tables)


def _enable_action(source: ProxyDashboardSource, enabled: bool) -> Action:
    async def run(worker_id: str) -> str:
        if source.registry.get(worker_id) is None:
            raise ValueError(f"no connected worker {worker_id!r}")
        source.worker_updates.set_by_operator(worker_id, enabled)
        if enabled:
            return f"worker {worker_id} enabled: it gets requests again"
        return f"worker {worker_id} disabled: running requests finish, no new ones are sent to it"

    if enabled:
        return Action("enable", "enable", run, table="workers")
    return Action("disable", "disable", run, table="workers", confirm="Stop sending requests to {target}?")


def _accepting(accepting: bool) -> Any:
    return cell("yes" if accepting else "no (draining)", "ok" if accepting else "warn")


def _drain_actions(source: ProxyDashboardSource) -> tuple[Action, Action]:
    """Drain the whole proxy (for maintenance): clients' new requests are refused as busy (a client
    with another proxy goes there), running answers finish and are billed; resume undoes it."""

    async def drain(_target: str) -> str:
        source.draining = True
        return "draining: new requests are refused as busy; running answers finish"

    async def resume(_target: str) -> str:
        source.draining = False
        return "accepting requests again"

    return (
        Action("drain", "drain proxy", drain, confirm="Refuse every new request on this proxy?"),
        Action("resume", "resume proxy", resume),
    )


def proxy_dashboard(
    source: ProxyDashboardSource, home: Path, policy: LocalHttpPolicy | None = None
) -> LocalHttpGuard:
    """The proxy's dashboard app; its operator token is written to ``home/operator.token``."""

    async def snapshot() -> Snapshot:
        return proxy_snapshot(source.statistics())

    settings = DashboardSettings(
        role="proxy",
        charts=PROXY_CHARTS,
        actions=(_enable_action(source, False), _enable_action(source, True), *_drain_actions(source)),
        operator_token=write_operator_token(home),
        policy=policy,
    )
    return dashboard_app(snapshot, settings)
