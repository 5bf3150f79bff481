"""The worker's Prometheus metrics (``GET /metrics`` on its health port), read at scrape time.

From the worker's own statistics (requests by outcome, tokens, load, proxy links, earnings as the
proxies last reported them), the GPUs' NVML readings when there are GPUs, and process health.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cocoon.node.process_metrics import register_process_metrics
from cocoon.worker.gpu_telemetry import GpuTelemetry

__all__ = ["PREFIX", "build_worker_registry"]

PREFIX = "cocoon_worker"

_OUTCOMES = {"served": "ok", "failed": "failed", "refused_busy": "busy", "cancelled": "cancelled"}


def _gpu_metrics(telemetry: GpuTelemetry) -> Iterable[Metric]:
    p = PREFIX
    labels = ["gpu", "uuid"]
    families = {
        "utilization_pct": GaugeMetricFamily(
            f"{p}_gpu_utilization_ratio", "GPU busy time (0..1)", labels=labels
        ),
        "memory_used_bytes": GaugeMetricFamily(
            f"{p}_gpu_memory_used_bytes", "GPU memory in use", labels=labels
        ),
        "memory_total_bytes": GaugeMetricFamily(f"{p}_gpu_memory_total_bytes", "GPU memory", labels=labels),
        "temperature_c": GaugeMetricFamily(f"{p}_gpu_temperature_celsius", "GPU temperature", labels=labels),
        "power_w": GaugeMetricFamily(f"{p}_gpu_power_watts", "GPU power draw", labels=labels),
    }
    for gpu in telemetry.gpus:
        for field, family in families.items():
            value = getattr(gpu, field)
            if value is not None:
                scale = 0.01 if field == "utilization_pct" else 1.0
                family.add_metric([str(gpu.index), gpu.uuid], float(value) * scale)
    yield from families.values()


class _WorkerCollector(Collector):
    def __init__(
        self, statistics: Callable[[], Mapping[str, Any]], gpus: Callable[[], GpuTelemetry] | None
    ) -> None:
        self._statistics = statistics
        self._gpus = gpus

    def collect(self) -> Iterable[Metric]:
        p = PREFIX
        s = self._statistics()
        requests = CounterMetricFamily(f"{p}_requests", "Requests by outcome", labels=["outcome"])
        for key, outcome in _OUTCOMES.items():
            requests.add_metric([outcome], s.get(key, 0))
        yield requests
        yield CounterMetricFamily(
            f"{p}_completion_tokens", "Completion tokens generated", value=s.get("completion_tokens", 0)
        )
        yield GaugeMetricFamily(
            f"{p}_active_requests", "Requests running now", value=s.get("active_requests", 0)
        )
        yield GaugeMetricFamily(
            f"{p}_max_active_requests", "Request slots", value=s.get("max_active_requests", 0)
        )
        yield GaugeMetricFamily(
            f"{p}_tokens_per_second", "Mean generation speed", value=s.get("tokens_per_s", 0)
        )
        links = GaugeMetricFamily(f"{p}_proxy_connected", "1 if the proxy link is up", labels=["proxy"])
        for proxy in s.get("proxies", []):
            links.add_metric([proxy["address"]], 1.0 if proxy.get("connected") else 0.0)
        yield links
        earned = GaugeMetricFamily(
            f"{p}_earned_nanoton", "nanoTON earned, as each proxy last reported", labels=["proxy"]
        )
        paid = GaugeMetricFamily(
            f"{p}_paid_nanoton", "nanoTON paid out, as each proxy last reported", labels=["proxy"]
        )
        for proxy, payment in s.get("payments", {}).items():
            earned.add_metric([proxy], float(payment.get("earned_nano", 0)))
            paid.add_metric([proxy], float(payment.get("paid_nano", 0)))
        yield from (earned, paid)
        if self._gpus is not None:
            yield from _gpu_metrics(self._gpus())


def build_worker_registry(
    statistics: Callable[[], Mapping[str, Any]], gpus: Callable[[], GpuTelemetry] | None = None
) -> CollectorRegistry:
    """A fresh registry over the worker's statistics (and GPU readings), with process health."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WorkerCollector(statistics, gpus))
    register_process_metrics(registry, "worker", lambda: float(statistics().get("uptime_s", 0.0)))
    return registry
