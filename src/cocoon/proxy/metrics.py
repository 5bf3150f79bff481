"""The proxy's operator view: Prometheus metrics (``/metrics``) and a JSON snapshot (``GET /stats``).

Nothing here is global: :func:`build_registry` makes a fresh ``CollectorRegistry`` whose collector reads the
ledger's and the worker registry's ``statistics()`` snapshots at scrape time (through callables the service
passes in, so this module never reads a clock or touches a database itself). :class:`RequestMetrics` adds
live counters that the service increments as requests pass (outcomes, retries, proxy overhead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cocoon.proxy.ledger import ClientTotals, LedgerStatistics, WorkerTotals
from cocoon.proxy.selection import LATENCY_BUCKETS, RegistryStatistics, worker_market_json

__all__ = ["PREFIX", "RequestMetrics", "build_registry", "stats_json"]

PREFIX = "cocoon_proxy"

LedgerSource = Callable[[], LedgerStatistics]
WorkersSource = Callable[[], RegistryStatistics]
CountersSource = Callable[[], Mapping[str, int]]


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _histogram(
    name: str, doc: str, buckets: Sequence[tuple[float, int]], total: float
) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, doc, buckets=[(_le(le), float(n)) for le, n in buckets], sum_value=total
    )


class _ProxyCollector(Collector):
    def __init__(
        self, ledger: LedgerSource | None, workers: WorkersSource | None, counters: CountersSource | None
    ) -> None:
        self._ledger = ledger
        self._workers = workers
        self._counters = counters

    def collect(self) -> Iterable[Metric]:
        if self._workers is not None:
            yield from self._collect_workers(self._workers())
        if self._ledger is not None:
            yield from self._collect_ledger(self._ledger())
        if self._counters is not None:
            for name, value in sorted(self._counters().items()):
                # requests, succeeded, failed, retried, rejected, cancelled, capped (bills cut to a bound)
                yield CounterMetricFamily(f"{PREFIX}_relay_{name}", f"Client requests: {name}", value=value)

    @staticmethod
    def _collect_workers(r: RegistryStatistics) -> Iterable[Metric]:
        p = PREFIX
        yield GaugeMetricFamily(f"{p}_workers", "Connected workers", value=r.workers)
        by_model = GaugeMetricFamily(f"{p}_workers_by_model", "Connected workers per model", labels=["model"])
        for model, n in sorted(r.models.items()):
            by_model.add_metric([model], n)
        yield by_model
        yield GaugeMetricFamily(f"{p}_running_requests", "Requests running on workers", value=r.running)
        yield GaugeMetricFamily(f"{p}_capacity", "Request slots of connected workers", value=r.capacity)
        yield GaugeMetricFamily(f"{p}_suspended_workers", "Workers suspended for failures", value=r.suspended)
        outcomes = CounterMetricFamily(
            f"{p}_worker_requests", "Requests finished by workers, by outcome", labels=["outcome"]
        )
        outcomes.add_metric(["ok"], r.requests_ok)
        outcomes.add_metric(["failed"], r.requests_failed)
        yield outcomes
        yield CounterMetricFamily(f"{p}_completion_tokens", "Completion tokens served", value=r.tokens)
        yield CounterMetricFamily(
            f"{p}_usage_mismatches",
            "Answers whose reported usage exceeded what was relayed",
            value=r.usage_mismatches,
        )
        yield _histogram(f"{p}_ttft_seconds", "Time to first token from workers", r.ttft_buckets, r.ttft_sum)
        yield _histogram(
            f"{p}_request_duration_seconds",
            "Duration of successful requests",
            r.duration_buckets,
            r.duration_sum,
        )
        recent = GaugeMetricFamily(
            f"{p}_recent_latency_seconds",
            "Latency percentiles over the recent window",
            labels=["kind", "quantile"],
        )
        for kind, pct in (("ttft", r.ttft_percentiles), ("duration", r.duration_percentiles)):
            for name, value in sorted(pct.items()):
                recent.add_metric([kind, name.removeprefix("p")], value)
        yield recent
        running = GaugeMetricFamily(
            f"{p}_worker_running", "Running requests per worker", labels=["worker", "model"]
        )
        score = GaugeMetricFamily(
            f"{p}_worker_score", "Selection score per worker (lower wins)", labels=["worker"]
        )
        ttft = GaugeMetricFamily(
            f"{p}_worker_ttft_seconds", "EWMA time to first token per worker", labels=["worker"]
        )
        fails = GaugeMetricFamily(
            f"{p}_worker_failure_rate", "Decayed failure rate per worker", labels=["worker"]
        )
        susp = GaugeMetricFamily(f"{p}_worker_suspended", "1 if the worker is suspended", labels=["worker"])
        for v in r.per_worker:
            wid = v.record.worker_id
            running.add_metric([wid, v.record.base_model], v.stats.running)
            if math.isfinite(v.stats.score):
                score.add_metric([wid], v.stats.score)
            if v.stats.ttft_s is not None:
                ttft.add_metric([wid], v.stats.ttft_s)
            fails.add_metric([wid], v.stats.failure_rate)
            susp.add_metric([wid], 1.0 if v.suspended else 0.0)
        yield from (running, score, ttft, fails, susp)

    @staticmethod
    def _collect_ledger(s: LedgerStatistics) -> Iterable[Metric]:
        p = PREFIX
        yield CounterMetricFamily(f"{p}_revenue_nanoton", "nanoTON billed to clients", value=s.revenue_nano)
        yield CounterMetricFamily(
            f"{p}_worker_earnings_nanoton", "nanoTON earned by workers", value=s.worker_earnings_nano
        )
        yield CounterMetricFamily(f"{p}_fees_nanoton", "nanoTON kept by the proxy", value=s.proxy_fees_nano)
        yield CounterMetricFamily(f"{p}_adjusted_tokens", "Adjusted tokens billed", value=s.adjusted_tokens)
        yield GaugeMetricFamily(
            f"{p}_reserved_nanoton", "nanoTON held by running requests", value=s.reserved_nano
        )
        yield GaugeMetricFamily(
            f"{p}_client_balance_nanoton", "Sum of client contract balances", value=s.client_balance_nano
        )
        yield GaugeMetricFamily(
            f"{p}_client_stake_nanoton", "Sum of client stakes", value=s.client_stake_nano
        )
        yield GaugeMetricFamily(
            f"{p}_client_available_nanoton",
            "Sum of funds clients may still use",
            value=s.client_available_nano,
        )
        yield GaugeMetricFamily(f"{p}_clients", "Clients in the billing store", value=s.clients)
        yield GaugeMetricFamily(f"{p}_billed_workers", "Workers in the billing store", value=s.workers)
        states = GaugeMetricFamily(
            f"{p}_ledger_requests", "Requests billed by state (pruned history included)", labels=["state"]
        )
        states.add_metric(["reserved"], s.requests_reserved)
        states.add_metric(["settled"], s.requests_settled)
        states.add_metric(["failed"], s.requests_failed)
        yield states
        yield GaugeMetricFamily(
            f"{p}_ledger_requests_pruned",
            "Finished requests pruned from the history",
            value=s.requests_pruned,
        )
        yield GaugeMetricFamily(f"{p}_state_seqno", "State seqno of the billing store", value=s.seqno)
        yield GaugeMetricFamily(
            f"{p}_committed_seqno", "Last state seqno seen committed on chain", value=s.last_committed_seqno
        )


class RequestMetrics:
    """Live counters the service increments per request, registered on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = PREFIX
        self.requests = Counter(
            f"{p}_requests", "Client requests by outcome", ["outcome"], registry=registry
        )  # outcome: ok / client_error / insufficient_funds / no_workers / busy / upstream_error / cancelled
        self.retries = Counter(f"{p}_retries", "Requests retried on another worker", registry=registry)
        self.overhead = Histogram(
            f"{p}_overhead_seconds",
            "Time the proxy adds before forwarding (selection, reservation)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.client_ttft = Histogram(
            f"{p}_client_ttft_seconds",
            "Time from request arrival to the first byte sent to the client",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def build_registry(
    ledger_statistics: LedgerSource | None = None,
    worker_statistics: WorkersSource | None = None,
    counters: CountersSource | None = None,
) -> CollectorRegistry:
    """A fresh registry whose metrics come from the given snapshot callables at each scrape.

    Typical use: ``build_registry(ledger.statistics, lambda: workers.statistics(clock()))``; serve it with
    ``prometheus_client.generate_latest(registry)``.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProxyCollector(ledger_statistics, worker_statistics, counters))
    return registry


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def stats_json(
    ledger: LedgerStatistics | None,
    workers: RegistryStatistics | None,
    *,
    clients: Sequence[ClientTotals] = (),
    worker_totals: Sequence[WorkerTotals] = (),
) -> dict[str, Any]:
    """The ``GET /stats`` document: plain JSON types only (no inf/NaN), stable keys."""
    out: dict[str, Any] = {}
    if ledger is not None:
        out["billing"] = asdict(ledger)
    if workers is not None:
        out["workers"] = {
            "count": workers.workers,
            "models": dict(sorted(workers.models.items())),
            "running": workers.running,
            "capacity": workers.capacity,
            "suspended": workers.suspended,
            "requests_ok": workers.requests_ok,
            "requests_failed": workers.requests_failed,
            "completion_tokens": workers.tokens,
            "usage_mismatches": workers.usage_mismatches,
            "latency": {
                "ttft_s": dict(workers.ttft_percentiles),
                "duration_s": dict(workers.duration_percentiles),
            },
            "list": [
                {
                    "worker_id": v.record.worker_id,
                    "model": v.record.model,
                    "coefficient": v.record.coefficient,
                    "max_active": v.record.max_active,
                    "gpu_class": v.record.gpu_class,
                    "region": v.record.region,
                    "image_hash": v.record.image_hash,
                    "model_hash": v.record.model_hash,
                    "attested_at": v.record.attested_at,
                    "connected_at": v.record.connected_at,
                    "enabled": v.enabled,
                    "attested": v.attested,
                    "suspended": v.suspended,
                    "suspended_until": v.stats.suspended_until,
                    "probation": v.stats.probation,
                    "running": v.stats.running,
                    "capacity": v.stats.capacity,
                    "ttft_s": _finite(v.stats.ttft_s),
                    "tokens_per_s": _finite(v.stats.tokens_per_s),
                    "duration_s": _finite(v.stats.duration_s),
                    "failure_rate": v.stats.failure_rate,
                    "score": _finite(v.stats.score),
                    "requests_ok": v.stats.total_ok,
                    "requests_failed": v.stats.total_failed,
                    "usage_mismatches": v.stats.usage_mismatches,
                    "suspensions": v.stats.suspensions,
                    **worker_market_json(v.record, v.stats),  # attested hardware, classes, measured
                }
                for v in workers.per_worker
            ],
        }
    if clients:
        out["clients"] = [asdict(c) for c in clients]
    if worker_totals:
        out["earnings"] = [asdict(w) for w in worker_totals]
    return out
