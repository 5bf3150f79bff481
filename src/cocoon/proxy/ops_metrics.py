"""What ``/metrics`` adds for the proxy's operator beyond billing and workers: the settlement loop's
progress and errors (from :class:`~cocoon.proxy.chain_sync.SyncStats`), requests refused before any
worker by reason, and process health."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cocoon.node.process_metrics import register_process_metrics
from cocoon.proxy.chain_sync import SyncStats
from cocoon.proxy.metrics import PREFIX

__all__ = ["register_ops_metrics"]

_SYNC_COUNTERS = {
    "ticks": "Settlement loop rounds",
    "errors": "Settlement loop rounds that failed (chain unreachable, refused message, ...)",
    "commits_posted": "State commits posted on chain",
    "commits_seen": "State commits seen committed on chain",
    "charges_posted": "Signed client charges posted",
    "payouts_posted": "Worker payouts posted",
    "refunds_granted": "Client refunds granted",
}


class _ChainSyncCollector(Collector):
    def __init__(self, stats: Callable[[], SyncStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        if stats is None:  # no chain: nothing to settle
            return
        for field, doc in _SYNC_COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_chain_sync_{field}", doc, value=getattr(stats, field))


class _RejectionsCollector(Collector):
    def __init__(self, rejections: Callable[[], Mapping[str, int]]) -> None:
        self._rejections = rejections

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            f"{PREFIX}_rejections",
            "Requests refused before any worker, by reason (OpenAI error code)",
            labels=["reason"],
        )
        for reason, count in sorted(self._rejections().items()):
            family.add_metric([reason], count)
        yield family


def register_ops_metrics(
    registry: CollectorRegistry,
    sync_stats: Callable[[], SyncStats | None],
    uptime_s: Callable[[], float],
    *,
    rejections: Callable[[], Mapping[str, int]] = dict,
) -> None:
    registry.register(_ChainSyncCollector(sync_stats))
    registry.register(_RejectionsCollector(rejections))
    register_process_metrics(registry, "proxy", uptime_s)
